-- name: GetPayment :one
SELECT * FROM payments WHERE order_id = $1;

-- name: GetPayments :many
-- The payments of the orders of a batch that have one.
SELECT * FROM payments WHERE order_id = ANY(@order_ids::uuid[]);

-- name: GetCancelledOrders :many
-- The orders of a batch whose cancellation was seen before any payment.
SELECT order_id FROM order_flags WHERE order_id = ANY(@order_ids::uuid[]) AND cancelled;

-- name: SavePayments :exec
-- Writes a batch's payments, one row per order: a new one is inserted; an
-- existing one can only go from captured to refunded (status moves
-- forward), which sets its status, reason and updated_at and keeps the rest.
INSERT INTO payments (order_id, payment_id, customer_id, email, amount_cents, currency, items, status, reason, attempts)
SELECT unnest(@order_ids::uuid[]), unnest(@payment_ids::uuid[]), unnest(@customer_ids::text[]),
       unnest(@emails::text[]), unnest(@amount_cents::bigint[]), unnest(@currencies::text[]),
       unnest(@items::text[])::jsonb, unnest(@statuses::text[]), unnest(@reasons::text[]), unnest(@attempts::int[])
ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, updated_at = now()
WHERE payments.status = 'captured' AND excluded.status = 'refunded';

-- name: FlagCancelled :exec
-- Remembers the cancellations of orders without a payment; the first
-- cancellation's reason is kept.
INSERT INTO order_flags (order_id, cancelled, cancel_reason)
SELECT unnest(@order_ids::uuid[]), true, unnest(@cancel_reasons::text[])
ON CONFLICT (order_id) DO NOTHING;
