-- name: GetOrderStates :many
-- The award and the cancellation of each order of a batch of records, in
-- one read: award_state is '' for an order without an award row, and
-- cancel_reason NULL for one never cancelled.
SELECT o.order_id::uuid                   AS order_id,
       coalesce(a.state, '')::text        AS award_state,
       coalesce(a.customer_id, '')::text  AS customer_id,
       coalesce(a.points, 0)::bigint      AS points,
       c.reason                           AS cancel_reason
FROM unnest(@order_ids::uuid[]) AS o(order_id)
LEFT JOIN awards a ON a.order_id = o.order_id
LEFT JOIN cancellations c ON c.order_id = o.order_id;

-- name: SaveAwards :exec
-- Writes the awards a batch decided or dropped, one row per order: a new
-- order's row is inserted as the batch left it; an existing row changes
-- only from pending to dropped (its state only moves forward). A zero
-- due_at (0001-01-01, Go's zero time) is NULL: sqlc types the array's
-- elements as time.Time, which has no NULL.
INSERT INTO awards (order_id, customer_id, points, state, due_at, reason)
SELECT unnest(@order_ids::uuid[]), unnest(@customer_ids::text[]), unnest(@points::bigint[]),
       unnest(@states::text[]), nullif(unnest(@due_ats::timestamptz[]), '0001-01-01 00:00:00Z'), unnest(@reasons::text[])
ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, reason = excluded.reason, updated_at = now()
WHERE awards.state = 'pending' AND excluded.state = 'dropped';

-- name: MarkAwarded :many
-- Marks the pending awards of the given orders awarded and returns them;
-- an order whose award is not pending is left out.
UPDATE awards SET state = 'awarded', awarded_at = now(), updated_at = now()
WHERE order_id = ANY(@order_ids::uuid[]) AND state = 'pending'
RETURNING order_id, customer_id, points;

-- name: ListAwards :many
-- A customer's pending and awarded awards, oldest first.
SELECT order_id, points, state, due_at, awarded_at
FROM awards
WHERE customer_id = $1 AND state IN ('pending', 'awarded')
ORDER BY created_at, order_id;

-- name: RememberCancellations :exec
-- Each order's first cancellation is kept: an order already cancelled, or
-- given twice, keeps its first reason.
INSERT INTO cancellations (order_id, reason)
SELECT unnest(@order_ids::uuid[]), unnest(@reasons::text[])
ON CONFLICT (order_id) DO NOTHING;
