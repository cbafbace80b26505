-- name: GetPayment :one
SELECT * FROM payments WHERE order_id = $1;

-- name: InsertPayment :one
INSERT INTO payments (order_id, payment_id, customer_id, email, amount_cents, currency, items, status, reason, attempts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING *;

-- name: RefundPayment :one
-- Refunds a captured payment; no row when it is not captured.
UPDATE payments SET status = 'refunded', reason = $2, updated_at = now()
WHERE order_id = $1 AND status = 'captured'
RETURNING *;

-- name: GetOrderFlags :one
SELECT * FROM order_flags WHERE order_id = $1;

-- name: FlagCancelled :exec
-- The first cancellation's reason is kept.
INSERT INTO order_flags (order_id, cancelled, cancel_reason)
VALUES ($1, true, $2)
ON CONFLICT (order_id) DO NOTHING;
