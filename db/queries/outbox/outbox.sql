-- name: InsertEvent :exec
INSERT INTO outbox (event_id, topic, key, event_type, payload, correlation_id, traceparent, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- name: PendingBatch :many
-- The oldest unpublished rows. No cursor: a row of a transaction that
-- commits late is still unpublished, so a later batch takes it.
SELECT id, event_id, topic, key, event_type, payload, correlation_id, traceparent, occurred_at
FROM outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT $1;

-- name: MarkPublished :exec
UPDATE outbox SET published_at = now() WHERE id = ANY(@ids::bigint[]);

-- name: Backlog :one
SELECT count(*)::bigint AS pending,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age_seconds
FROM outbox
WHERE published_at IS NULL;

-- name: DeleteExpired :execrows
DELETE FROM outbox
WHERE id IN (
    SELECT o.id FROM outbox o
    WHERE o.created_at < @cutoff AND o.published_at < @cutoff
    LIMIT @batch_size
);

-- name: MarkForReplay :execrows
UPDATE outbox SET published_at = NULL
WHERE id IN (
    SELECT o.id FROM outbox o
    WHERE o.created_at >= @since AND o.created_at < @until AND o.published_at IS NOT NULL
    ORDER BY o.id
    LIMIT @batch_size
);
