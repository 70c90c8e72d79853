-- The bodies in a table of their own. A delivery's row is rewritten whole by each of the
-- updates that move it through the queue (the lease, then the outcome), and SQLite writes
-- every page it changed to the WAL at commit: with the body inline (often a kilobyte or
-- more) a page held 3 or 4 deliveries, and a lease of 16 dirtied 4 or 5 pages of rows. The
-- body never changes after the enqueue, so it is written once, here, under the delivery's id,
-- and read back by the lease by primary key. Deleting a delivery deletes its body in the same
-- transaction (the store's purge does both).
--
-- Upgrading copies every stored body and rewrites the deliveries table once, in the opening
-- store's first transaction: time and free disk in proportion to what is stored (purge old
-- delivered rows first to shorten it). A database opened read-only is not upgraded and is
-- refused, naming the schema versions, until it has been opened read-write once.
CREATE TABLE outbox_bodies (
    id   INTEGER PRIMARY KEY NOT NULL,
    body BLOB NOT NULL
) STRICT;

INSERT INTO outbox_bodies (id, body) SELECT id, body FROM outbox_deliveries;
ALTER TABLE outbox_deliveries DROP COLUMN body;

-- The due index over every destination, (next_attempt_at, id), served only the question of
-- when the next delivery is due, and every lease and outcome paid to keep it: that question
-- is now answered with one probe of the per-destination due index per destination, as on
-- PostgreSQL.
DROP INDEX outbox_deliveries_due;
