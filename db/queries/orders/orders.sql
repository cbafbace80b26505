-- name: InsertOrder :one
INSERT INTO orders (id, customer_id, email, items, total_cents, currency, payment_token, correlation_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *;

-- name: InsertPlacedOrder :exec
-- InsertOrder with the creation time given, for POST /orders's one round
-- trip: the OrderPlaced event queued beside it carries the same time.
INSERT INTO orders (id, customer_id, email, items, total_cents, currency, payment_token, correlation_id, created_at, updated_at)
VALUES (@id, @customer_id, @email, @items, @total_cents, @currency, @payment_token, @correlation_id, @created_at, @created_at);

-- name: InsertPlacedOrders :exec
-- InsertPlacedOrder for many orders in one statement: the keyless POST
-- /orders requests that arrive together are written in one round trip
-- (placer.go).
INSERT INTO orders (id, customer_id, email, items, total_cents, currency, payment_token, correlation_id, created_at, updated_at)
SELECT id, customer_id, email, items::jsonb, total_cents, currency, payment_token, correlation_id, created_at, created_at
FROM (SELECT unnest(@ids::uuid[]) AS id, unnest(@customer_ids::text[]) AS customer_id, unnest(@emails::text[]) AS email,
             unnest(@items::text[]) AS items, unnest(@total_cents::bigint[]) AS total_cents,
             unnest(@currencies::text[]) AS currency, unnest(@payment_tokens::text[]) AS payment_token,
             unnest(@correlation_ids::text[]) AS correlation_id, unnest(@created_ats::timestamptz[]) AS created_at) AS u;

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
SELECT event, event_id, service, occurred_at, recorded_at
FROM order_timeline
WHERE order_id = $1
ORDER BY occurred_at, id;

-- name: LockOrders :many
-- The orders a batch of consumed events is about, locked in id order, for
-- the consumer to apply the batch to in memory (see consume.go).
SELECT id, status, cancel_reason, points_awarded
FROM orders
WHERE id = ANY (@ids::uuid[])
ORDER BY id
FOR UPDATE;

-- name: UpdateOrders :exec
-- Writes back the orders a batch changed, one row each. An empty
-- cancel_reason is NULL; clock_timestamp, not now(), because the batch's
-- transaction may have begun a while ago.
UPDATE orders AS o
SET status         = u.status,
    cancel_reason  = NULLIF(u.cancel_reason, ''),
    points_awarded = u.points_awarded,
    updated_at     = clock_timestamp()
FROM (SELECT unnest(@ids::uuid[]) AS id, unnest(@statuses::text[]) AS status,
             unnest(@cancel_reasons::text[]) AS cancel_reason, unnest(@points::bigint[]) AS points_awarded) AS u
WHERE o.id = u.id;

-- name: InsertTimelineEvents :exec
-- InsertTimelineEvent for many events; those already recorded are skipped.
INSERT INTO order_timeline (order_id, event, event_id, service, occurred_at)
SELECT unnest(@order_ids::uuid[]), unnest(@events::text[]), unnest(@event_ids::uuid[]),
       unnest(@services::text[]), unnest(@occurred_ats::timestamptz[])
ON CONFLICT (event_id) DO NOTHING;

-- name: CancelOrder :one
-- Cancels an order that is placed or paid; no row when it does not exist,
-- has shipped, its payment failed or it is cancelled already.
UPDATE orders
SET status = 'cancelled', cancel_reason = @cancel_reason::text, updated_at = clock_timestamp()
WHERE id = @id AND status IN ('placed', 'paid')
RETURNING *;

-- name: PruneIdempotencyKeys :execrows
DELETE FROM idempotency_keys
WHERE key IN (
    SELECT k.key FROM idempotency_keys k
    WHERE k.created_at < @cutoff::timestamptz
    LIMIT @batch_size
);
