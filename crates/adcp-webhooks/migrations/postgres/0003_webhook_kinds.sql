-- adcp_outbox_enqueue accepts every AdCP 3.2 webhook kind: the function of migration 2,
-- replaced with the longer kind list (nothing else changes).
CREATE OR REPLACE FUNCTION adcp_outbox_enqueue(
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
    IF kind NOT IN ('mcp', 'revocation', 'artifact', 'collection-list-changed', 'property-list-changed', 'account-status-changed', 'account-change-recorded', 'capabilities-changed', 'principal-changed', 'creative-status-changed', 'creative-assignment-changed', 'creative-purged', 'indicators-changed', 'reporting-ledger-changed', 'reporting-status-changed', 'reporting-delivery-ready', 'wholesale-feed', 'media-buy-delivery', 'raw') THEN
        RAISE EXCEPTION 'adcp_outbox_enqueue: unknown kind %; use one of mcp, revocation, artifact, collection-list-changed, property-list-changed, account-status-changed, account-change-recorded, capabilities-changed, principal-changed, creative-status-changed, creative-assignment-changed, creative-purged, indicators-changed, reporting-ledger-changed, reporting-status-changed, reporting-delivery-ready, wholesale-feed, media-buy-delivery, raw', kind
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
