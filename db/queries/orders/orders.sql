-- name: InsertOrder :one
INSERT INTO orders (id, customer_id, email, items, total_cents, currency, payment_token, correlation_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *;

-- name: GetOrder :one
SELECT * FROM orders WHERE id = $1;

-- name: ClaimIdempotencyKey :one
-- Returns no row when the key is taken. A concurrent transaction holding the
-- same key makes this wait until it commits or rolls back.
INSERT INTO idempotency_keys (key, request_hash, order_id)
VALUES ($1, $2, $3)
ON CONFLICT (key) DO NOTHING
RETURNING order_id;

-- name: GetIdempotencyKey :one
SELECT * FROM idempotency_keys WHERE key = $1;

-- name: InsertTimelineEvent :execrows
-- Zero rows when the event was already recorded.
INSERT INTO order_timeline (order_id, event, event_id, service, occurred_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (event_id) DO NOTHING;

-- name: ListTimeline :many
SELECT event, event_id, service, occurred_at
FROM order_timeline
WHERE order_id = $1
ORDER BY occurred_at, id;
