-- Fewer index entries per delivery, a lease planned once per connection, and an enqueue that
-- reads nothing back when every row is new.
--
-- Every update that moves a delivery through the queue changes an indexed column (the lease
-- its due time and lease, the outcome its state), so PostgreSQL writes the new row version
-- into every index whose predicate it matches: each full index costs three entries per
-- delivery (insert, lease, outcome). Migration 4 added four for the console; measured with
-- `bench/outbox.sh` (100 per enqueue, 2 workers), without them the server spent a quarter less
-- CPU per webhook. The console keeps an index range per page with two partial indexes
-- instead, entered once per delivery (by the outcome):
--
-- * the support lookup by idempotency key is the unique key, now led by the key;
-- * delivered and dead rows by state (and destination), newest id first: `(state, id)` and
--   `(state, destination, id)`, only for rows that are no longer pending;
-- * pending rows are the backlog the due index already holds, by destination: a page of them
--   reads that backlog (one destination's, with a destination filter) and sorts it by id;
-- * a destination's deliveries in every state: one range per state, merged (the console
--   builds that query).
ALTER TABLE outbox_deliveries
    ADD CONSTRAINT outbox_deliveries_key_url UNIQUE (idempotency_key, url);
ALTER TABLE outbox_deliveries DROP CONSTRAINT outbox_deliveries_url_idempotency_key_key;
DROP INDEX outbox_deliveries_idempotency_key;
DROP INDEX outbox_deliveries_destination_id;
DROP INDEX outbox_deliveries_state_id;
DROP INDEX outbox_deliveries_state_destination_id;
CREATE INDEX outbox_deliveries_done_state_id ON outbox_deliveries (state, id)
    WHERE state <> 'pending';
CREATE INDEX outbox_deliveries_done_state_destination_id
    ON outbox_deliveries (state, destination, id) WHERE state <> 'pending';

-- The lease's second statement got a custom plan on every call (its generic plan is costed
-- higher, though it runs as fast): ~250 µs of planning per lease. One generic plan per
-- connection does the same work.
ALTER FUNCTION outbox_lease(BIGINT, INTEGER, BIGINT, INTEGER, TEXT[], BIGINT)
    SET plan_cache_mode = force_generic_plan;

-- The enqueue of migration 2, with one change: when every row of the batch was inserted
-- (no repeat, the usual case), the ids come from the insert itself, matched to the batch by
-- key and URL, instead of reading every row back from the table to compare digests.
CREATE OR REPLACE FUNCTION outbox_enqueue_batch(
    p_url TEXT[], p_destination TEXT[], p_key TEXT[], p_kind TEXT[], p_body BYTEA[],
    p_headers TEXT[], p_digest BYTEA[], p_created BIGINT[], p_deadline BIGINT[], p_first BIGINT[]
) RETURNS TABLE (ord BIGINT, id BIGINT, created BOOLEAN) LANGUAGE plpgsql VOLATILE SET jit = off AS $$
DECLARE
    v_ids BIGINT[];
    v_keys TEXT[];
    v_urls TEXT[];
    r RECORD;
BEGIN
    INSERT INTO outbox_destinations (key)
    SELECT DISTINCT k FROM unnest(p_destination) AS k ORDER BY 1
    ON CONFLICT (key) DO NOTHING;
    WITH ins AS (
        INSERT INTO outbox_deliveries (destination, url, idempotency_key, kind, body, extra_headers,
                                       state, created_at, deadline_at, next_attempt_at, content_digest)
        SELECT i.destination, i.url, i.idempotency_key, i.kind, i.body, i.extra_headers, 'pending',
               i.created_at, i.deadline_at, i.first_attempt_at, i.digest
          FROM unnest(p_url, p_destination, p_key, p_kind, p_body, p_headers, p_digest, p_created,
                      p_deadline, p_first) WITH ORDINALITY
               AS i(url, destination, idempotency_key, kind, body, extra_headers, digest, created_at,
                    deadline_at, first_attempt_at, n)
         ORDER BY i.n
        ON CONFLICT (idempotency_key, url) DO NOTHING
        RETURNING outbox_deliveries.id, outbox_deliveries.idempotency_key, outbox_deliveries.url
    )
    SELECT COALESCE(array_agg(ins.id), '{}'), COALESCE(array_agg(ins.idempotency_key), '{}'),
           COALESCE(array_agg(ins.url), '{}')
      INTO v_ids, v_keys, v_urls FROM ins;
    IF cardinality(v_ids) = cardinality(p_url) THEN
        RETURN QUERY
        SELECT i.n, s.id, TRUE
          FROM unnest(p_url, p_key) WITH ORDINALITY AS i(url, idempotency_key, n)
          JOIN unnest(v_ids, v_keys, v_urls) AS s(id, idempotency_key, url)
            ON s.idempotency_key = i.idempotency_key AND s.url = i.url
         ORDER BY i.n;
        RETURN;
    END IF;
    FOR r IN
        SELECT i.n, i.url, i.idempotency_key, i.digest, d.id AS stored_id,
               d.content_digest AS stored_digest, fresh.id IS NOT NULL AS fresh,
               i.n = min(i.n) OVER (PARTITION BY i.url, i.idempotency_key) AS first_in_batch
          FROM unnest(p_url, p_key, p_digest) WITH ORDINALITY AS i(url, idempotency_key, digest, n)
          LEFT JOIN outbox_deliveries d ON d.idempotency_key = i.idempotency_key AND d.url = i.url
          LEFT JOIN unnest(v_ids) AS fresh(id) ON fresh.id = d.id
         ORDER BY i.n
    LOOP
        IF r.stored_id IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'AC408',
                MESSAGE = format('the webhook with idempotency key %s for %s was refused as a repeat, but its first copy is gone (purged at the same moment?); enqueue it again',
                                 r.idempotency_key, r.url);
        END IF;
        IF r.stored_digest IS NOT NULL AND r.stored_digest IS DISTINCT FROM r.digest THEN
            RAISE EXCEPTION USING ERRCODE = 'AC409',
                MESSAGE = format('idempotency_conflict: idempotency key %s is already in the outbox for %s with a different body or extra headers; nothing was stored (the first body is the one delivered); use a new idempotency key for new content',
                                 r.idempotency_key, r.url),
                DETAIL = format('batch row %s', r.n);
        END IF;
        ord := r.n;
        id := r.stored_id;
        created := r.fresh AND r.first_in_batch;
        RETURN NEXT;
    END LOOP;
END;
$$;
