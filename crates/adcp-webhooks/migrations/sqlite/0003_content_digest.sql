-- What tells a repeated enqueue from a conflicting one: the SHA-256 of the clear body and
-- extra headers (see `content_digest`), computed before any sealing. Rows stored before this
-- migration have none and count as repeats.
ALTER TABLE outbox_deliveries ADD COLUMN content_digest BLOB;
