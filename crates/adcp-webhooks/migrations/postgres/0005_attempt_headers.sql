-- The signed request headers and the response headers of each attempt (a JSON array of
-- [name, value] pairs, credentials masked, at most 32 fields and 4 KiB), shown on the
-- console's delivery page. Attempts logged before this migration have none (NULL).
ALTER TABLE outbox_attempts ADD COLUMN request_headers TEXT, ADD COLUMN response_headers TEXT;
-- The deliveries page filtered by destination and state (a destination's dead letters, say):
-- a keyset page walks (destination, state, id) from the newest id down, however many of the
-- destination's deliveries are in other states.
CREATE INDEX outbox_deliveries_destination_state_id ON outbox_deliveries (destination, state, id);
