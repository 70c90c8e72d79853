-- The signed request headers and the response headers of each attempt (a JSON array of
-- [name, value] pairs, credentials masked, at most 32 fields and 4 KiB), shown on the
-- console's delivery page. Attempts logged before this migration have none (NULL).
ALTER TABLE outbox_attempts ADD COLUMN request_headers TEXT, ADD COLUMN response_headers TEXT;
-- The deliveries page filtered by state and destination (one destination's dead letters,
-- say): a keyset page walks (state, destination, id) from the newest id down, one index
-- range however many of the destination's deliveries are in other states, and the count
-- before a bulk requeue of such a filter is an index-only scan of it. State leads: its
-- order follows the table's far more than the destination's does, which is what lets the
-- planner prefer this range to walking every dead letter.
CREATE INDEX outbox_deliveries_state_destination_id ON outbox_deliveries (state, destination, id);
-- The partial index of dead letters by id (0001) does what (state, id) (0004) does, and the
-- planner chose it for a destination's dead letters, reading every dead letter of every
-- destination to find those of one: listing and purging dead letters walk (state, id).
DROP INDEX outbox_deliveries_dead;
