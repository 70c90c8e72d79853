-- One index over the idempotency key, not two.
--
-- The unique key led by the URL (0001) and the console's index by key (0004) each take one
-- entry per enqueued delivery at a place no other delivery of the batch is near (keys are
-- random), so each costs about one page of write-ahead log per delivery: measured on a copy
-- of a bench database (35,000 rows), an enqueue of 100 deliveries wrote 314 pages of log with
-- both and 187 without the console's. A unique key led by the idempotency key serves both:
-- the enqueue's conflict target (SQLite matches `ON CONFLICT (url, idempotency_key)` to it in
-- any column order) and the console's lookup by key whatever the URL. PostgreSQL made the
-- same change in its migration 8.
--
-- SQLite cannot drop the index of a table's constraint, so the table is rebuilt: copied into
-- a new table without the constraint, the old one dropped, the new one renamed, its indexes
-- created again. Foreign keys are off for the copy (the attempts reference the deliveries by
-- name, and a drop with them on would check every attempt) and on again after; the rebuild is
-- one transaction of its own, and running it again after a crash between its commit and the
-- record of this migration rebuilds once more. Every row keeps its id, and the id sequence its
-- high-water mark, so no id is ever handed out twice. Time and free disk in proportion to the
-- deliveries stored (purge old delivered rows first to shorten it).
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TEMP TABLE outbox_rebuild_sequence AS
    SELECT seq FROM sqlite_sequence WHERE name = 'outbox_deliveries';
CREATE TABLE outbox_deliveries_rebuilt (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    destination      TEXT NOT NULL REFERENCES outbox_destinations (key),
    url              TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    kind             TEXT NOT NULL,
    extra_headers    TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    created_at       INTEGER NOT NULL,
    deadline_at      INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    total_attempts   INTEGER NOT NULL DEFAULT 0,
    lease_token      INTEGER,
    lease_expires_at INTEGER,
    last_attempt_at  INTEGER,
    last_status      INTEGER,
    last_error_class TEXT,
    delivered_at     INTEGER,
    dead_at          INTEGER,
    dead_reason_code TEXT,
    dead_reason      TEXT,
    content_digest   BLOB
) STRICT;
INSERT INTO outbox_deliveries_rebuilt (id, destination, url, idempotency_key, kind,
    extra_headers, state, created_at, deadline_at, next_attempt_at, attempts, total_attempts,
    lease_token, lease_expires_at, last_attempt_at, last_status, last_error_class, delivered_at,
    dead_at, dead_reason_code, dead_reason, content_digest)
SELECT id, destination, url, idempotency_key, kind, extra_headers, state, created_at,
    deadline_at, next_attempt_at, attempts, total_attempts, lease_token, lease_expires_at,
    last_attempt_at, last_status, last_error_class, delivered_at, dead_at, dead_reason_code,
    dead_reason, content_digest
FROM outbox_deliveries;
DROP TABLE outbox_deliveries;
ALTER TABLE outbox_deliveries_rebuilt RENAME TO outbox_deliveries;
-- The copy set the sequence to the highest id copied; a higher one handed out before (to a
-- row since purged) is kept.
DELETE FROM sqlite_sequence WHERE name = 'outbox_deliveries';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'outbox_deliveries', max(seq) FROM (
        SELECT seq FROM outbox_rebuild_sequence
        UNION ALL SELECT max(id) FROM outbox_deliveries
    ) HAVING max(seq) IS NOT NULL;
DROP TABLE outbox_rebuild_sequence;
CREATE UNIQUE INDEX outbox_deliveries_key_url ON outbox_deliveries (idempotency_key, url);
CREATE INDEX outbox_deliveries_state ON outbox_deliveries (state, id);
CREATE INDEX outbox_deliveries_state_destination_id ON outbox_deliveries (state, destination, id);
CREATE INDEX outbox_deliveries_destination_id ON outbox_deliveries (destination, id);
CREATE INDEX outbox_deliveries_due_by_destination ON outbox_deliveries (destination, next_attempt_at, id)
    WHERE state = 'pending';
CREATE INDEX outbox_deliveries_leased ON outbox_deliveries (destination, lease_expires_at)
    WHERE lease_token IS NOT NULL;
COMMIT;
PRAGMA foreign_keys = ON;
