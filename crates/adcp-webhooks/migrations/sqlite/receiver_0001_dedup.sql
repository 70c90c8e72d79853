-- The receiver's idempotency-key claims (adcp_webhooks::verify::SqliteDedupStore, and
-- `adcp-webhook receive --store PATH`). One row per (scope, key): claimed (in progress, with a
-- lease and the claimant's token) or done. Rows are deleted when released, and once past
-- `forget_at` by the store's inline cleanup.
CREATE TABLE IF NOT EXISTS receiver_dedup (
    scope       TEXT    NOT NULL,
    idem_key    TEXT    NOT NULL,
    digest      BLOB    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('claimed', 'done')),
    token       TEXT,
    lease_until INTEGER,
    forget_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, idem_key)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS receiver_dedup_forget_at ON receiver_dedup (forget_at);
