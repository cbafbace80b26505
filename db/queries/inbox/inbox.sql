-- name: Claim :execrows
-- One row when the event is new, none when it was handled before (or is
-- being handled by a transaction that commits first: the insert waits for
-- it, then does nothing).
INSERT INTO processed_events (event_id, topic, partition, "offset")
VALUES (@event_id, @topic, @partition, @offset_)
ON CONFLICT (event_id) DO NOTHING;

-- name: Prune :execrows
DELETE FROM processed_events
WHERE event_id IN (
    SELECT p.event_id FROM processed_events p
    WHERE p.processed_at < @cutoff
    LIMIT @batch_size
);
