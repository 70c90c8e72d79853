-- A lease that changes no indexed column, so PostgreSQL writes it in place (a heap-only
-- update: a new row version on the same page and no index entry), and an enqueue that takes
-- no lock on its destination's row.
--
-- Until now a lease moved the delivery's due time to the lease's expiry and set its lease
-- token, and both are indexed (the due index, and the lease index that counted live leases
-- for the cap): every lease wrote a new entry into each of the table's four indexes that held
-- the row (primary key, idempotency key, due, lease) and left a dead entry in the due index
-- for every later lease to step over. A profile of the server over a `bench/outbox.sh` run
-- (100 per enqueue, 2 workers) put index insertion at a quarter of its CPU; 4 of the 15 index
-- entries written per webhook were the lease's.
--
-- Now:
-- * a lease sets only lease_token and lease_expires_at; a leased delivery keeps its due time
--   and its place in the due index, and the lease passes over live leases (a heap check per
--   row in flight) instead of finding them moved out of its way;
-- * the cap counts live leases in outbox_leases, one row per lease call and destination with
--   the number of its deliveries still leased: the lease adds it, an outcome or a release
--   that ends one of its leases takes one off, and it stops counting when the lease
--   expires (a worker that crashed leaves its rows to expire, as before). An operator's
--   requeue that ends a lease leaves the count until that lease expires: the cap is held a
--   little lower for that long, never exceeded;
-- * the table leaves half of each new page free, so that a page's rows can all be leased in
--   place (a lease writes its new row version beside the old one);
-- * the lease index goes; nothing else indexes the lease columns.
--
-- The destination foreign key goes too: its check took a KEY SHARE lock on the destination's
-- row for every delivery enqueued, 3% of the server's CPU in the same profile. Every enqueue path inserts the destination
-- before its deliveries in the same statement or transaction, and no destination is ever
-- deleted.
--
-- Attempts are found by time only in ranges (the live feed's start, rates over the last hour
-- or day), and they are inserted in time order: a BRIN index serves those ranges and costs an
-- insert next to nothing, where the B-tree took an entry per attempt.
--
-- Workers of earlier versions call outbox_lease, which now leases the same way (through
-- outbox_lease_next), so a rolling upgrade never leases a delivery twice. Their outcomes do not
-- take their leases off the count, so the cap is held lower until those leases expire; their
-- next-due query reads a live lease as due now, so they poll until they are replaced.
CREATE TABLE outbox_leases (
    destination TEXT NOT NULL,
    token       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    -- Deliveries of this lease call still leased: set by the lease, lowered by outcomes and
    -- releases.
    live        INTEGER NOT NULL,
    PRIMARY KEY (destination, token)
);

-- Leases that were live when this version took over, counted the new way.
INSERT INTO outbox_leases (destination, token, expires_at, live)
SELECT destination, lease_token, max(lease_expires_at), count(*)::INTEGER
  FROM outbox_deliveries WHERE state = 'pending' AND lease_token IS NOT NULL
 GROUP BY destination, lease_token;

DROP INDEX outbox_deliveries_leased;
ALTER TABLE outbox_deliveries SET (fillfactor = 50);
ALTER TABLE outbox_deliveries DROP CONSTRAINT outbox_deliveries_destination_fkey;

DROP INDEX outbox_attempts_started;
CREATE INDEX outbox_attempts_started ON outbox_attempts USING brin (started_at);

-- A delivery is leasable when it is pending, due, and holds no live lease. A leased delivery
-- is due again when its lease expires: that is what the next due time counts for it.
CREATE OR REPLACE FUNCTION outbox_lease_next(
    p_now BIGINT, p_limit INTEGER, p_lease_ms BIGINT, p_cap INTEGER, p_exclude TEXT[],
    p_token BIGINT
) RETURNS TABLE (
    id BIGINT, url TEXT, destination TEXT, idempotency_key TEXT, kind TEXT, body BYTEA,
    extra_headers TEXT, attempts BIGINT, created_at BIGINT, deadline_at BIGINT, next_due BIGINT
) LANGUAGE plpgsql VOLATILE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_next BIGINT;
    v_keys TEXT[];
    v_firsts BIGINT[];
BEGIN
    -- Each destination's first leasable due time, and the earliest of them and of the live
    -- leases' expiries, over every destination, locked or not.
    WITH firsts AS MATERIALIZED (
        SELECT t.key, f.next_attempt_at AS first_due FROM outbox_destinations t
        CROSS JOIN LATERAL (
            SELECT d.next_attempt_at FROM outbox_deliveries d
            WHERE d.destination = t.key AND d.state = 'pending'
              AND (d.lease_token IS NULL OR d.lease_expires_at <= p_now)
            ORDER BY d.next_attempt_at LIMIT 1
        ) f
    ), live AS MATERIALIZED (
        SELECT l.destination, sum(l.live) AS n, min(l.expires_at) AS ends FROM outbox_leases l
        WHERE l.expires_at > p_now AND l.live > 0
        GROUP BY l.destination
    )
    SELECT LEAST((SELECT min(first_due) FROM firsts), (SELECT min(ends) FROM live)),
           COALESCE(array_agg(k.key), '{}'), COALESCE(array_agg(k.first_due), '{}')
      INTO v_next, v_keys, v_firsts FROM (
        SELECT t.key, f.first_due FROM firsts f
        JOIN outbox_destinations t ON t.key = f.key
        LEFT JOIN live v ON v.destination = t.key
        WHERE f.first_due <= p_now
          AND NOT t.disabled AND t.open_until <= p_now AND t.key <> ALL (p_exclude)
          AND (CASE WHEN t.open_until > 0 THEN 1 ELSE GREATEST(p_cap, 1) END) > COALESCE(v.n, 0)
        ORDER BY f.first_due
        LIMIT GREATEST(p_limit, 1)
        FOR NO KEY UPDATE OF t SKIP LOCKED
    ) k;
    IF cardinality(v_keys) > 0 THEN
        -- A new snapshot, taken with the destinations locked: their live leases are counted
        -- again, including any a worker that held the lock a moment ago committed.
        RETURN QUERY
        WITH room AS MATERIALIZED (
            SELECT t.key, k.first_due, (CASE WHEN t.open_until > 0 THEN 1 ELSE GREATEST(p_cap, 1) END)
                   - COALESCE((SELECT sum(l.live) FROM outbox_leases l
                               WHERE l.destination = t.key AND l.expires_at > p_now AND l.live > 0), 0)::INTEGER
                   AS free
            FROM unnest(v_keys, v_firsts) AS k(key, first_due)
            JOIN outbox_destinations t ON t.key = k.key
        ), pick AS (
            SELECT c.row_at FROM room r
            CROSS JOIN LATERAL (
                SELECT d.ctid AS row_at, d.id, d.next_attempt_at FROM outbox_deliveries d
                WHERE d.destination = r.key AND d.state = 'pending'
                  AND d.next_attempt_at >= r.first_due AND d.next_attempt_at <= p_now
                  AND (d.lease_token IS NULL OR d.lease_expires_at <= p_now)
                ORDER BY d.next_attempt_at, d.id LIMIT GREATEST(LEAST(r.free, p_limit), 0)
            ) c
            ORDER BY c.next_attempt_at, c.id LIMIT p_limit
        ), leased AS (
            -- Found by the row version the pick read (no second walk of the primary key). A
            -- row updated since (a late outcome) is not found at that version and is left for
            -- the next lease.
            UPDATE outbox_deliveries d
               SET lease_token = p_token, lease_expires_at = p_now + p_lease_ms
              FROM pick
             WHERE d.ctid = pick.row_at AND d.state = 'pending' AND d.next_attempt_at <= p_now
               AND (d.lease_token IS NULL OR d.lease_expires_at <= p_now)
            RETURNING d.id, d.url, d.destination, d.idempotency_key, d.kind, d.body,
                      d.extra_headers, d.attempts, d.created_at, d.deadline_at
        ), counted AS (
            INSERT INTO outbox_leases (destination, token, expires_at, live)
            SELECT l.destination, p_token, p_now + p_lease_ms, count(*)::INTEGER
              FROM leased l GROUP BY l.destination
        ), swept AS (
            -- Counts that no longer count, of the destinations this call holds. One that an
            -- outcome is lowering at this moment is left for a later lease: waiting for it
            -- could deadlock with that outcome's health update, which waits for this call's
            -- lock on the destination.
            DELETE FROM outbox_leases o
             WHERE o.ctid = ANY (ARRAY(
                 SELECT s.ctid FROM outbox_leases s
                  WHERE s.destination = ANY (v_keys) AND (s.live <= 0 OR s.expires_at <= p_now)
                    FOR UPDATE SKIP LOCKED))
        )
        SELECT l.id, l.url, l.destination, l.idempotency_key, l.kind, l.body, l.extra_headers,
               l.attempts, l.created_at, l.deadline_at, NULL::BIGINT
          FROM leased l;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    id := NULL;
    next_due := v_next;
    RETURN NEXT;
END;
$$;

-- The lease of earlier versions, for their workers during an upgrade: the same lease.
CREATE OR REPLACE FUNCTION outbox_lease(
    p_now BIGINT, p_limit INTEGER, p_lease_ms BIGINT, p_cap INTEGER, p_exclude TEXT[],
    p_token BIGINT
) RETURNS TABLE (
    id BIGINT, url TEXT, destination TEXT, idempotency_key TEXT, kind TEXT, body BYTEA,
    extra_headers TEXT, attempts BIGINT, created_at BIGINT, deadline_at BIGINT
) LANGUAGE sql VOLATILE SET jit = off AS $$
    SELECT l.id, l.url, l.destination, l.idempotency_key, l.kind, l.body, l.extra_headers,
           l.attempts, l.created_at, l.deadline_at
      FROM outbox_lease_next(p_now, p_limit, p_lease_ms, p_cap, p_exclude, p_token) l
     WHERE l.id IS NOT NULL;
$$;

-- When the next pending delivery is due: its due time, or for one leased, when its lease
-- expires (already past for a lease that has expired). Per destination, only the rows up to
-- its first unleased one are read: the deliveries in flight, and that one.
CREATE FUNCTION outbox_next_due() RETURNS BIGINT LANGUAGE sql STABLE SET jit = off AS $$
    SELECT min(f.due) FROM outbox_destinations t
    CROSS JOIN LATERAL (
        SELECT min(CASE WHEN d.lease_token IS NULL THEN d.next_attempt_at
                        ELSE GREATEST(d.next_attempt_at, d.lease_expires_at) END) AS due
          FROM outbox_deliveries d
         WHERE d.destination = t.key AND d.state = 'pending'
           AND d.next_attempt_at <= COALESCE((
               SELECT u.next_attempt_at FROM outbox_deliveries u
                WHERE u.destination = t.key AND u.state = 'pending' AND u.lease_token IS NULL
                ORDER BY u.next_attempt_at LIMIT 1), 9223372036854775807)
    ) f;
$$;
