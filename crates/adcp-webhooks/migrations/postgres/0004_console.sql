-- The operator console (feature `console`). The deliveries page lists newest first by id
-- (keyset on the primary key); filtering by state walks (state, id) and by destination walks
-- (destination, id), so a page costs an index range however many rows are stored.
CREATE INDEX outbox_deliveries_state_id ON outbox_deliveries (state, id);
CREATE INDEX outbox_deliveries_destination_id ON outbox_deliveries (destination, id);
-- The support question ("we never got op_123's webhook"): by idempotency key, whatever the
-- URL (the unique key leads with the URL).
CREATE INDEX outbox_deliveries_idempotency_key ON outbox_deliveries (idempotency_key);
-- Attempts by time: the live tail, rates over the last hour and day, latency percentiles.
CREATE INDEX outbox_attempts_started ON outbox_attempts (started_at);

-- Every action taken in the console: who, what, when and how many rows.
CREATE TABLE outbox_audit (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    rows   BIGINT NOT NULL
);
