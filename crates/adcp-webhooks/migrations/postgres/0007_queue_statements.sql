-- The queue's statements run without JIT compilation, and a lease counts live leases only up
-- to the cap.
--
-- A table the planner has no statistics for yet (a new outbox, or one whose row count moved
-- far since the last ANALYZE) can give the lease a plan costed above jit_above_cost: every
-- call then compiled its expressions again, ~9 ms per lease of 32 rows against ~1.5 ms for
-- running it. The outbox's statements are short and run thousands of times a second, which is
-- the case JIT is not for: the store's own connections run with jit = off, and these
-- functions carry it, since callers run them on their own connections.
--
-- A lease counted every live lease of a destination through a bitmap scan of the lease index,
-- which visits the heap page of every index entry, including those of leases completed since
-- the last VACUUM (thousands on a busy queue); counting at most the cap is all the room check
-- needs and lets a plain index scan stop early and skip entries already known dead.
ALTER FUNCTION outbox_enqueue_batch(TEXT[], TEXT[], TEXT[], TEXT[], BYTEA[], TEXT[], BYTEA[], BIGINT[],
                                    BIGINT[], BIGINT[]) SET jit = off;
ALTER FUNCTION adcp_outbox_enqueue(TEXT, TEXT, TEXT, JSONB, TEXT, TEXT) SET jit = off;

CREATE OR REPLACE FUNCTION outbox_lease(
    p_now BIGINT, p_limit INTEGER, p_lease_ms BIGINT, p_cap INTEGER, p_exclude TEXT[],
    p_token BIGINT
) RETURNS TABLE (
    id BIGINT, url TEXT, destination TEXT, idempotency_key TEXT, kind TEXT, body BYTEA,
    extra_headers TEXT, attempts BIGINT, created_at BIGINT, deadline_at BIGINT
) LANGUAGE plpgsql VOLATILE SET jit = off AS $$
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
              SELECT count(*) FROM (SELECT FROM outbox_deliveries l WHERE l.destination = t.key AND l.lease_token IS NOT NULL AND l.lease_expires_at > p_now LIMIT GREATEST(p_cap, 1)) live)
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
            SELECT count(*) FROM (SELECT FROM outbox_deliveries l WHERE l.destination = t.key AND l.lease_token IS NOT NULL AND l.lease_expires_at > p_now LIMIT GREATEST(p_cap, 1)) live)::INTEGER AS free
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
