-- The durable webhook outbox (PostgreSQL). Times are Unix milliseconds.
--
-- Applied by `adcp-webhook outbox migrate --db postgres://...` (or `PostgresStore::migrate`),
-- in one transaction under an advisory lock, so two migrations started at once apply it once.

-- One row per destination key (an explicit breaker key, or the URL's origin): breaker state,
-- failure run and the disabled flag, shared by every worker. A worker leasing a destination's
-- deliveries holds this row's lock (FOR NO KEY UPDATE SKIP LOCKED) for the few milliseconds of
-- the lease, which is what lets the concurrency cap hold across workers.
CREATE TABLE outbox_destinations (
    key                  TEXT PRIMARY KEY,
    disabled             BOOLEAN NOT NULL DEFAULT FALSE,
    disabled_reason      TEXT,
    disabled_at          BIGINT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    failing_since        BIGINT,
    -- 0: closed. In the future: open. In the past: half-open (one probe at a time).
    open_until           BIGINT NOT NULL DEFAULT 0,
    -- How long the breaker was last opened for; a failed probe reopens it for as long.
    open_span            BIGINT NOT NULL DEFAULT 0,
    last_success_at      BIGINT,
    last_failure_at      BIGINT
);

-- One row per webhook. A lease pushes next_attempt_at to the lease expiry, so a crashed
-- worker's deliveries become due again without any sweeper. fillfactor leaves room on each
-- page for the updates every delivery goes through.
CREATE TABLE outbox_deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination      TEXT NOT NULL REFERENCES outbox_destinations (key),
    url              TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    kind             TEXT NOT NULL,
    body             BYTEA NOT NULL,
    extra_headers    TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    created_at       BIGINT NOT NULL,
    deadline_at      BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    total_attempts   BIGINT NOT NULL DEFAULT 0,
    lease_token      BIGINT,
    lease_expires_at BIGINT,
    -- The lease token of the last completion applied, so a batched completion can tell which
    -- of its rows it actually changed.
    completed_token  BIGINT,
    last_attempt_at  BIGINT,
    last_status      BIGINT,
    last_error_class TEXT,
    delivered_at     BIGINT,
    dead_at          BIGINT,
    dead_reason_code TEXT,
    dead_reason      TEXT,
    UNIQUE (url, idempotency_key)
) WITH (fillfactor = 80);

-- Due work, per destination: only pending rows are indexed, so delivered rows cost the hot
-- query nothing, and a lease reads each destination's earliest due rows directly, so one
-- destination's backlog never hides another's work.
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (destination, next_attempt_at, id)
    WHERE state = 'pending';
-- Leases in flight, counted per destination for the cross-worker concurrency cap.
CREATE INDEX outbox_deliveries_leased ON outbox_deliveries (destination, lease_expires_at)
    WHERE lease_token IS NOT NULL;
-- Retention: the oldest delivered rows first, in bounded batches.
CREATE INDEX outbox_deliveries_delivered_at ON outbox_deliveries (delivered_at) WHERE state = 'delivered';
-- Dead letters, for operators (listing and purging them stays cheap among millions of
-- delivered rows).
CREATE INDEX outbox_deliveries_dead ON outbox_deliveries (id) WHERE state = 'dead';
-- Every update of a delivery that moves it through the queue changes an indexed column, so it
-- writes an entry into every index whose predicate the new row matches: the hot path is kept
-- to the primary key, the (url, idempotency_key) key, the due index and the lease index.

-- The attempt log, kept out of the hot table (insert-only; purged with its delivery).
CREATE TABLE outbox_attempts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   BIGINT NOT NULL,
    attempt       BIGINT NOT NULL,
    started_at    BIGINT NOT NULL,
    latency_ms    BIGINT NOT NULL,
    status        BIGINT,
    error_class   TEXT NOT NULL,
    error         TEXT,
    response_body BYTEA
);

CREATE INDEX outbox_attempts_delivery ON outbox_attempts (delivery_id, id);

-- Wake sleeping workers when work arrives: one notification per enqueueing statement
-- (PostgreSQL folds repeats within a transaction), delivered at commit.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('adcp_outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_deliveries_notify AFTER INSERT ON outbox_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Lease a batch in one round trip. Two statements, each with its own snapshot (a volatile
-- function under READ COMMITTED takes a new one per statement):
-- 1. pick the destinations with due work and room under their cap, earliest due first, and
--    lock their rows, skipping any another worker is leasing right now (SKIP LOCKED: workers
--    never queue behind each other);
-- 2. with those locks held, count each destination's live leases again (everything committed
--    before the locks were taken is visible) and claim at most cap minus that many of its
--    earliest due rows; a half-open destination (open_until past but not reset) gets one.
-- Live leases are counted from the lease index alone: only pending rows ever hold a lease
-- token (completing, releasing and requeueing clear it), and a state test would let the
-- planner walk the due index instead.
-- Claiming pushes next_attempt_at to the lease expiry; the UPDATE re-checks that the row is
-- still pending and due, so a row can never be leased twice. Every read is an index probe
-- per destination, so the cost follows the rows leased and the destinations with work, not
-- the size of any backlog.
CREATE FUNCTION outbox_lease(
    p_now BIGINT, p_limit INTEGER, p_lease_ms BIGINT, p_cap INTEGER, p_exclude TEXT[],
    p_token BIGINT
) RETURNS TABLE (
    id BIGINT, url TEXT, destination TEXT, idempotency_key TEXT, kind TEXT, body BYTEA,
    extra_headers TEXT, attempts BIGINT, created_at BIGINT, deadline_at BIGINT
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_keys TEXT[];
BEGIN
    SELECT COALESCE(array_agg(k.key), '{}') INTO v_keys FROM (
        SELECT t.key FROM outbox_destinations t
        CROSS JOIN LATERAL (
            SELECT d.next_attempt_at FROM outbox_deliveries d
            WHERE d.destination = t.key AND d.state = 'pending'
            ORDER BY d.next_attempt_at LIMIT 1
        ) first_due
        WHERE first_due.next_attempt_at <= p_now
          AND NOT t.disabled AND t.open_until <= p_now AND t.key <> ALL (p_exclude)
          AND (CASE WHEN t.open_until > 0 THEN 1 ELSE GREATEST(p_cap, 1) END) > (
              SELECT count(*) FROM outbox_deliveries l
              WHERE l.destination = t.key AND l.lease_token IS NOT NULL
                AND l.lease_expires_at > p_now)
        ORDER BY first_due.next_attempt_at
        LIMIT GREATEST(p_limit, 1)
        FOR NO KEY UPDATE OF t SKIP LOCKED
    ) k;
    IF cardinality(v_keys) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH room AS MATERIALIZED (
        SELECT t.key, (CASE WHEN t.open_until > 0 THEN 1 ELSE GREATEST(p_cap, 1) END) - (
            SELECT count(*) FROM outbox_deliveries l
            WHERE l.destination = t.key AND l.lease_token IS NOT NULL
              AND l.lease_expires_at > p_now)::INTEGER AS free
        FROM outbox_destinations t WHERE t.key = ANY (v_keys)
    ), pick AS (
        SELECT c.id FROM room r
        CROSS JOIN LATERAL (
            SELECT d.id, d.next_attempt_at FROM outbox_deliveries d
            WHERE d.destination = r.key AND d.state = 'pending' AND d.next_attempt_at <= p_now
            ORDER BY d.next_attempt_at, d.id LIMIT GREATEST(r.free, 0)
        ) c
        ORDER BY c.next_attempt_at, c.id LIMIT p_limit
    )
    UPDATE outbox_deliveries d
       SET lease_token = p_token, lease_expires_at = p_now + p_lease_ms,
           next_attempt_at = p_now + p_lease_ms
      FROM pick
     WHERE d.id = pick.id AND d.state = 'pending' AND d.next_attempt_at <= p_now
    RETURNING d.id, d.url, d.destination, d.idempotency_key, d.kind, d.body, d.extra_headers,
              d.attempts, d.created_at, d.deadline_at;
END;
$$;
