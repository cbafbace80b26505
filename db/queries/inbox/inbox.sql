-- name: Claim :execrows
-- One row when the event is new, none when it was handled before (or is
-- being handled by a transaction that commits first: the insert waits for
-- it, then does nothing).
INSERT INTO processed_events (event_id, topic, partition, "offset")
VALUES (@event_id, @topic, @partition, @offset_)
ON CONFLICT (event_id) DO NOTHING;

-- name: ClaimAll :many
-- Claim for many events in one statement: returns the eventIds that were
-- new. An eventId given twice is claimed once (the second conflicts with
-- the first).
INSERT INTO processed_events (event_id, topic, partition, "offset")
SELECT unnest(@event_ids::uuid[]), unnest(@topics::text[]), unnest(@partitions::int[]), unnest(@offsets::bigint[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id;

-- name: Prune :execrows
DELETE FROM processed_events
WHERE event_id IN (
    SELECT p.event_id FROM processed_events p
    WHERE p.processed_at < @cutoff
    LIMIT @batch_size
);
