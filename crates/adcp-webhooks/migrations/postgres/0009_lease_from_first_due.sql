-- A lease that reads each destination's due rows from its first due time on, and that says
-- when the next delivery is due when it leases nothing.
--
-- A delivery's entry in the due index dies when it is leased (its due time moves to the
-- lease's expiry) and when it is delivered; PostgreSQL removes dead index entries only when
-- VACUUM runs or when an insert needs the room on their page, and inserts land at the
-- index's newest end, so the dead entries of everything delivered since the last VACUUM stay
-- at the oldest end of each destination's range, before its first pending row. Every read
-- that starts there steps over them: after a 33,000-webhook bench run the due index had 151
-- pages, and a probe for the first due row read 159 buffers (0.37 ms) to find none.
--
-- outbox_lease_next makes one such probe per destination and call:
-- * its first statement finds each destination's first due time (as outbox_lease does), and
--   the earliest of them over every destination, locked or not;
-- * its second statement starts each destination's range at that first due time instead of
--   stepping over the dead entries again (a row made due between the two statements with an
--   earlier due time, such as a release, is left for the next lease);
-- * when it leases nothing it returns one row whose id is NULL and whose next_due is the
--   earliest due time of any pending delivery (NULL when none is pending), which a worker
--   about to sleep would otherwise read with a query of its own.
-- outbox_lease stays as it was, for workers of earlier versions during an upgrade.
CREATE FUNCTION outbox_lease_next(
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
    WITH firsts AS MATERIALIZED (
        SELECT t.key, f.next_attempt_at AS first_due FROM outbox_destinations t
        CROSS JOIN LATERAL (
            SELECT d.next_attempt_at FROM outbox_deliveries d
            WHERE d.destination = t.key AND d.state = 'pending'
            ORDER BY d.next_attempt_at LIMIT 1
        ) f
    )
    SELECT (SELECT min(first_due) FROM firsts), COALESCE(array_agg(k.key), '{}'),
           COALESCE(array_agg(k.first_due), '{}')
      INTO v_next, v_keys, v_firsts FROM (
        SELECT t.key, f.first_due FROM firsts f
        JOIN outbox_destinations t ON t.key = f.key
        WHERE f.first_due <= p_now
          AND NOT t.disabled AND t.open_until <= p_now AND t.key <> ALL (p_exclude)
          AND (CASE WHEN t.open_until > 0 THEN 1 ELSE GREATEST(p_cap, 1) END) > (
              SELECT count(*) FROM (SELECT FROM outbox_deliveries l WHERE l.destination = t.key AND l.lease_token IS NOT NULL AND l.lease_expires_at > p_now LIMIT GREATEST(p_cap, 1)) live)
        ORDER BY f.first_due
        LIMIT GREATEST(p_limit, 1)
        FOR NO KEY UPDATE OF t SKIP LOCKED
    ) k;
    IF cardinality(v_keys) > 0 THEN
        RETURN QUERY
        WITH room AS MATERIALIZED (
            SELECT t.key, k.first_due, (CASE WHEN t.open_until > 0 THEN 1 ELSE GREATEST(p_cap, 1) END) - (
                SELECT count(*) FROM (SELECT FROM outbox_deliveries l WHERE l.destination = t.key AND l.lease_token IS NOT NULL AND l.lease_expires_at > p_now LIMIT GREATEST(p_cap, 1)) live)::INTEGER AS free
            FROM unnest(v_keys, v_firsts) AS k(key, first_due)
            JOIN outbox_destinations t ON t.key = k.key
        ), pick AS (
            SELECT c.id FROM room r
            CROSS JOIN LATERAL (
                SELECT d.id, d.next_attempt_at FROM outbox_deliveries d
                WHERE d.destination = r.key AND d.state = 'pending'
                  AND d.next_attempt_at >= r.first_due AND d.next_attempt_at <= p_now
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
                  d.attempts, d.created_at, d.deadline_at, NULL::BIGINT;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    id := NULL;
    next_due := v_next;
    RETURN NEXT;
END;
$$;
