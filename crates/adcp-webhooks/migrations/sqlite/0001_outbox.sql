-- The durable webhook outbox (SQLite). Times are Unix milliseconds.

-- One row per destination key (an explicit breaker key, or the URL's origin): breaker state,
-- failure run and the disabled flag, shared by every worker using this database.
CREATE TABLE outbox_destinations (
    key                  TEXT PRIMARY KEY NOT NULL,
    disabled             INTEGER NOT NULL DEFAULT 0,
    disabled_reason      TEXT,
    disabled_at          INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    failing_since        INTEGER,
    open_until           INTEGER NOT NULL DEFAULT 0,
    last_success_at      INTEGER,
    last_failure_at      INTEGER
) STRICT;

-- One row per webhook. A lease pushes next_attempt_at to the lease expiry, so a crashed
-- worker's deliveries become due again without any sweeper.
CREATE TABLE outbox_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    destination      TEXT NOT NULL REFERENCES outbox_destinations (key),
    url              TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    kind             TEXT NOT NULL,
    body             BLOB NOT NULL,
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
    UNIQUE (url, idempotency_key)
) STRICT;

-- Due work: only pending rows are indexed, so delivered rows cost the hot query nothing.
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX outbox_deliveries_state ON outbox_deliveries (state, id);
CREATE INDEX outbox_deliveries_destination ON outbox_deliveries (destination) WHERE state = 'pending';

-- The attempt log, kept out of the hot table.
CREATE TABLE outbox_attempts (
    id            INTEGER PRIMARY KEY,
    delivery_id   INTEGER NOT NULL REFERENCES outbox_deliveries (id),
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    latency_ms    INTEGER NOT NULL,
    status        INTEGER,
    error_class   TEXT NOT NULL,
    error         TEXT,
    response_body BLOB
) STRICT;

CREATE INDEX outbox_attempts_delivery ON outbox_attempts (delivery_id, id);
