-- Enqueueing inside the caller's transaction, from Rust or from SQL, and conflicts as errors.

-- What tells a repeated enqueue from a conflicting one: SHA-256 over the clear body's length
-- (8 bytes, big-endian), the body and the extra headers' stored text, computed before any
-- sealing. Rows stored earlier get it now when their body is in clear; sealed ones keep none
-- and count as repeats.
ALTER TABLE outbox_deliveries ADD COLUMN content_digest BYTEA;
UPDATE outbox_deliveries
   SET content_digest = sha256(int8send(octet_length(body)::bigint) || body || convert_to(extra_headers, 'UTF8'))
 WHERE substring(body FROM 1 FOR 4) <> '\x00414531'::bytea;

-- Store a batch, all or none, in one call (one round trip), inside whatever transaction the
-- caller is in. Each input row comes back once, in order, with the id it is stored under and
-- whether this call created it. A row whose URL and key are already stored (or earlier in the
-- batch) is a repeat when its digest matches, and otherwise raises SQLSTATE AC409 with
-- `idempotency_conflict` in the message and the row's ordinal (from 1) in DETAIL; raising
-- aborts the statement, so none of the batch is kept.
-- Statement 1 inserts (waiting on any concurrent insert of the same key to commit or abort);
-- statement 2 reads every row back with a new snapshot (READ COMMITTED), so a key committed
-- by another transaction meanwhile is seen and compared too.
CREATE FUNCTION outbox_enqueue_batch(
    p_url TEXT[], p_destination TEXT[], p_key TEXT[], p_kind TEXT[], p_body BYTEA[],
    p_headers TEXT[], p_digest BYTEA[], p_created BIGINT[], p_deadline BIGINT[], p_first BIGINT[]
) RETURNS TABLE (ord BIGINT, id BIGINT, created BOOLEAN) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_ids BIGINT[];
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
        ON CONFLICT (url, idempotency_key) DO NOTHING
        RETURNING outbox_deliveries.id
    )
    SELECT COALESCE(array_agg(ins.id), '{}') INTO v_ids FROM ins;
    FOR r IN
        SELECT i.n, i.url, i.idempotency_key, i.digest, d.id AS stored_id,
               d.content_digest AS stored_digest, fresh.id IS NOT NULL AS fresh,
               i.n = min(i.n) OVER (PARTITION BY i.url, i.idempotency_key) AS first_in_batch
          FROM unnest(p_url, p_key, p_digest) WITH ORDINALITY AS i(url, idempotency_key, digest, n)
          LEFT JOIN outbox_deliveries d ON d.url = i.url AND d.idempotency_key = i.idempotency_key
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

-- Enqueue one webhook from any language, inside the caller's own transaction: the delivery
-- commits or rolls back with the caller's rows, and workers are woken at its commit. Checks
-- what SQL can check and raises an error naming the problem otherwise; what it cannot (DNS,
-- private addresses) the worker checks before signing, dead-lettering a refused destination
-- with its reason. Bodies are stored in clear (workers holding ADCP_OUTBOX_KEY deliver clear
-- and sealed rows alike). Returns the delivery id (the existing one for a repeat).
CREATE FUNCTION adcp_outbox_enqueue(
    url TEXT, body TEXT, idempotency_key TEXT, extra_headers JSONB DEFAULT '{}'::jsonb,
    kind TEXT DEFAULT 'raw', breaker_key TEXT DEFAULT NULL
) RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_authority TEXT;
    v_scheme TEXT;
    v_origin TEXT;
    v_doc JSONB;
    v_bytes BYTEA;
    v_headers TEXT;
    v_bad TEXT;
    v_now BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
    v_id BIGINT;
BEGIN
    IF url IS NULL OR body IS NULL OR idempotency_key IS NULL OR extra_headers IS NULL OR kind IS NULL THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: url, body, idempotency_key, extra_headers and kind must not be NULL'
            USING ERRCODE = '22004';
    END IF;
    -- The URL: absolute http(s), a host, no credentials, no spaces or control characters.
    v_scheme := lower(substring(url FROM '^([A-Za-z][A-Za-z0-9+.-]*)://'));
    IF v_scheme IS NULL OR v_scheme NOT IN ('https', 'http') THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: url must be an absolute https:// (or http://) URL'
            USING ERRCODE = '22023';
    END IF;
    IF url ~ '[[:space:][:cntrl:]]' THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: url must not contain spaces or control characters'
            USING ERRCODE = '22023';
    END IF;
    v_authority := substring(url FROM '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#\\]*)');
    IF position('@' IN v_authority) > 0 THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: url must not carry credentials (user:password@)'
            USING ERRCODE = '22023';
    END IF;
    IF v_authority = '' OR v_authority ~ '^:' THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: url has no host' USING ERRCODE = '22023';
    END IF;
    v_origin := v_scheme || '://' || lower(v_authority);
    IF (v_scheme = 'https' AND v_origin ~ ':443$') OR (v_scheme = 'http' AND v_origin ~ ':80$') THEN
        v_origin := regexp_replace(v_origin, ':[0-9]+$', '');
    END IF;
    -- The key: the AdCP shape.
    IF idempotency_key !~ '^[A-Za-z0-9_.:-]{16,255}$' THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: idempotency_key must match ^[A-Za-z0-9_.:-]{16,255}$'
            USING ERRCODE = '22023';
    END IF;
    -- The body: a JSON object of at most 10 MiB, whose idempotency_key (when present) is the key.
    v_bytes := convert_to(body, 'UTF8');
    IF octet_length(v_bytes) > 10485760 THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: body is % bytes, over the 10 MiB limit', octet_length(v_bytes)
            USING ERRCODE = '22023';
    END IF;
    BEGIN
        v_doc := body::jsonb;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: body is not valid JSON' USING ERRCODE = '22023';
    END;
    IF jsonb_typeof(v_doc) <> 'object' THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: body must be a JSON object, not %', jsonb_typeof(v_doc)
            USING ERRCODE = '22023';
    END IF;
    IF v_doc ? 'idempotency_key' AND (v_doc -> 'idempotency_key') IS DISTINCT FROM to_jsonb(idempotency_key) THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: the body''s idempotency_key differs from the idempotency_key argument'
            USING ERRCODE = '22023';
    END IF;
    -- The kind.
    IF kind NOT IN ('mcp', 'revocation', 'artifact', 'collection-list-changed', 'property-list-changed', 'raw') THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: unknown kind %; use one of mcp, revocation, artifact, collection-list-changed, property-list-changed, raw', kind
            USING ERRCODE = '22023';
    END IF;
    -- The extra headers: an object of strings, token names, no reserved header.
    IF jsonb_typeof(extra_headers) <> 'object' THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: extra_headers must be a JSON object of header names to strings'
            USING ERRCODE = '22023';
    END IF;
    SELECT h.key INTO v_bad FROM jsonb_each(extra_headers) AS h
     WHERE jsonb_typeof(h.value) <> 'string' LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: extra header % must have a string value', v_bad
            USING ERRCODE = '22023';
    END IF;
    SELECT h.key INTO v_bad FROM jsonb_each_text(extra_headers) AS h
     WHERE h.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' OR h.value ~ '[[:cntrl:]]' LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: extra header % has an invalid name or a control character in its value', v_bad
            USING ERRCODE = '22023';
    END IF;
    SELECT h.key INTO v_bad FROM jsonb_each_text(extra_headers) AS h
     WHERE lower(h.key) IN ('signature', 'signature-input', 'content-digest', 'content-type', 'host',
                            'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'te',
                            'trailer', 'upgrade') LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: extra header % is reserved (set by the sender)', v_bad
            USING ERRCODE = '22023';
    END IF;
    SELECT '[' || COALESCE(string_agg('[' || to_json(h.key)::text || ',' || to_json(h.value)::text || ']', ','
                                      ORDER BY h.key), '') || ']'
      INTO v_headers FROM jsonb_each_text(extra_headers) AS h;
    SELECT b.id INTO v_id FROM outbox_enqueue_batch(
        ARRAY[url], ARRAY[COALESCE(breaker_key, v_origin)], ARRAY[idempotency_key], ARRAY[kind],
        ARRAY[v_bytes], ARRAY[v_headers],
        ARRAY[sha256(int8send(octet_length(v_bytes)::bigint) || v_bytes || convert_to(v_headers, 'UTF8'))],
        ARRAY[v_now], ARRAY[v_now + 86400000], ARRAY[v_now]) AS b;
    RETURN v_id;
END;
$$;
