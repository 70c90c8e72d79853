-- The signed request headers and the response headers of each attempt (a JSON array of
-- [name, value] pairs, credentials masked, at most 32 fields and 4 KiB), shown on the
-- console's delivery page. Attempts logged before this migration have none (NULL).
ALTER TABLE outbox_attempts ADD COLUMN request_headers TEXT;
ALTER TABLE outbox_attempts ADD COLUMN response_headers TEXT;
-- The deliveries page filtered by state and destination (one destination's dead letters,
-- say): a keyset page walks (state, destination, id) from the newest id down, one index
-- range however many of the destination's deliveries are in other states. The count before
-- a bulk requeue of such a filter reads the same range.
CREATE INDEX outbox_deliveries_state_destination_id ON outbox_deliveries (state, destination, id);
