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
SELECT event, event_id, service, occurred_at, recorded_at
FROM order_timeline
WHERE order_id = $1
ORDER BY occurred_at, id;

-- name: ApplyEvent :one
-- Applies one consumed event to its order in one statement. The status
-- becomes to_status only when it is one of from_statuses, so it only moves
-- forward; cancel_reason, when given, is set with it. points_awarded is set
-- when given. updated_at always moves, as the event joins the timeline;
-- clock_timestamp, not now(), because the consumer's batch transaction may
-- have begun well before this event. previous_status tells the caller
-- whether the event moved the order. No row: orders does not know it.
UPDATE orders AS o
SET status         = CASE WHEN o.status = ANY (@from_statuses::text[]) THEN @to_status::text ELSE o.status END,
    cancel_reason  = CASE WHEN o.status = ANY (@from_statuses::text[])
                          THEN COALESCE(sqlc.narg(cancel_reason)::text, o.cancel_reason)
                          ELSE o.cancel_reason END,
    points_awarded = COALESCE(sqlc.narg(points_awarded)::bigint, o.points_awarded),
    updated_at     = clock_timestamp()
FROM (SELECT p.id, p.status FROM orders AS p WHERE p.id = @id FOR UPDATE) AS prev
WHERE o.id = prev.id
RETURNING prev.status AS previous_status, o.status;

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
