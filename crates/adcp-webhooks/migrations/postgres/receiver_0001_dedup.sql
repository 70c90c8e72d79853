-- The receiver's idempotency-key claims (adcp_webhooks::verify::PostgresDedupStore, and
-- `adcp-webhook receive --store postgres://...`). One row per (scope, key): claimed (in
-- progress, with a lease and the claimant's token) or done. Rows are deleted when released,
-- and once past `forget_at` by the store's inline cleanup.
CREATE TABLE IF NOT EXISTS receiver_dedup (
    scope       TEXT   NOT NULL,
    idem_key    TEXT   NOT NULL,
    digest      BYTEA  NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN ('claimed', 'done')),
    token       TEXT,
    lease_until BIGINT,
    forget_at   BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);

CREATE INDEX IF NOT EXISTS receiver_dedup_forget_at ON receiver_dedup (forget_at);
