-- Each worker's signing keys: the kid it signs with and the kids it publishes, recorded at
-- start, on every key reload and as a heartbeat, so `outbox status` on any host names the
-- active kid. `stopped_at` is set when the worker stops cleanly.
CREATE TABLE outbox_workers (
    worker         TEXT PRIMARY KEY,
    host           TEXT NOT NULL,
    pid            BIGINT NOT NULL,
    active_kid     TEXT NOT NULL,
    published_kids TEXT NOT NULL,
    started_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    stopped_at     BIGINT
);
