-- Limits shared by every worker on this database: leases in flight are counted per
-- destination (the concurrency cap), and a failed half-open probe reopens the breaker for as
-- long as it was last open. Leasing reads each destination's earliest due rows from its own
-- index, so one destination's backlog never hides another's work.
ALTER TABLE outbox_destinations ADD COLUMN open_span INTEGER NOT NULL DEFAULT 0;

CREATE INDEX outbox_deliveries_leased ON outbox_deliveries (destination, lease_expires_at)
    WHERE lease_token IS NOT NULL;

CREATE INDEX outbox_deliveries_due_by_destination ON outbox_deliveries (destination, next_attempt_at, id)
    WHERE state = 'pending';
-- Its leading column serves what this one did.
DROP INDEX outbox_deliveries_destination;
