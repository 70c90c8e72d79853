//! The PostgreSQL outbox store (feature `postgres`): many workers on many hosts, one database.
