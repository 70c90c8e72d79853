-- Limits shared by every worker on this database: leases in flight are counted per
-- destination (the concurrency cap), and a failed half-open probe reopens the breaker for as
-- long as it was last open.
ALTER TABLE outbox_destinations ADD COLUMN open_span INTEGER NOT NULL DEFAULT 0;

CREATE INDEX outbox_deliveries_leased ON outbox_deliveries (destination, lease_expires_at)
    WHERE lease_token IS NOT NULL;
