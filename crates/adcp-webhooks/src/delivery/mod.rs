//! Durable delivery: an outbox that retries until a webhook is delivered and never loses one.

pub mod policy;
pub mod store;
