-- name: GetAward :one
SELECT * FROM awards WHERE order_id = $1;

-- name: InsertAward :exec
INSERT INTO awards (order_id, customer_id, points, state, due_at, reason)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: DropAward :one
-- Drops a pending award; no row when it is not pending.
UPDATE awards SET state = 'dropped', reason = $2, updated_at = now()
WHERE order_id = $1 AND state = 'pending'
RETURNING *;

-- name: MarkAwarded :one
-- Marks a pending award awarded; no row when it is not pending.
UPDATE awards SET state = 'awarded', awarded_at = now(), updated_at = now()
WHERE order_id = $1 AND state = 'pending'
RETURNING *;

-- name: ListAwards :many
-- A customer's pending and awarded awards, oldest first.
SELECT order_id, points, state, due_at, awarded_at
FROM awards
WHERE customer_id = $1 AND state IN ('pending', 'awarded')
ORDER BY created_at, order_id;

-- name: RememberCancellation :exec
-- The first cancellation's reason is kept.
INSERT INTO cancellations (order_id, reason) VALUES ($1, $2)
ON CONFLICT (order_id) DO NOTHING;

-- name: GetCancellation :one
SELECT * FROM cancellations WHERE order_id = $1;
