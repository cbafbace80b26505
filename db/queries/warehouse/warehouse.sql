-- name: GetShipment :one
SELECT * FROM shipments WHERE order_id = $1;

-- name: ListLines :many
SELECT sku, quantity FROM shipment_lines WHERE order_id = $1 ORDER BY sku COLLATE "C";

-- name: GetShipments :many
-- The shipments of the batch's orders that have one, each with its
-- reserved lines (only a scheduled pick has any), one row per line: a
-- shipment without one comes once, with a null sku.
SELECT s.order_id, s.status, s.pick_id, l.sku, l.quantity
FROM shipments s
LEFT JOIN shipment_lines l ON l.order_id = s.order_id AND l.reserved
WHERE s.order_id = ANY(@order_ids::uuid[])
ORDER BY s.order_id, l.sku COLLATE "C";

-- name: LockStock :many
-- Locks the stock rows of skus (distinct) one after the other in byte
-- order, creating the missing ones with default_available, and returns
-- each row's units as they are under the lock: a conflicting row is
-- locked by the update, which changes nothing (and so returns the latest
-- committed value, not the statement's snapshot), a new row is held by
-- its insert. Each SKU is taken before the next, waiting if another
-- transaction holds it.
INSERT INTO stock AS st (sku, available)
SELECT s.sku, @default_available::bigint
FROM unnest(@skus::text[]) AS s (sku)
ORDER BY s.sku COLLATE "C"
ON CONFLICT (sku) DO UPDATE SET available = st.available
RETURNING st.sku, st.available;

-- name: AddStock :exec
-- Adds deltas[i] to the available units of skus[i]; the rows are locked
-- (LockStock).
UPDATE stock AS s SET available = s.available + d.delta, updated_at = now()
FROM (SELECT unnest(@skus::text[]) AS sku, unnest(@deltas::bigint[]) AS delta) AS d
WHERE s.sku = d.sku;

-- name: UpsertShipments :exec
-- Writes the shipments a batch changed, each as the batch leaves it: a
-- new row for an order warehouse had not decided on (a zero pick_id is
-- none), and for an order that had one (a scheduled pick now cancelled)
-- its status and reason.
INSERT INTO shipments (order_id, status, pick_id, cancel_reason)
SELECT unnest(@order_ids::uuid[]), unnest(@statuses::text[]),
       nullif(unnest(@pick_ids::uuid[]), '00000000-0000-0000-0000-000000000000'), unnest(@cancel_reasons::text[])
ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, cancel_reason = excluded.cancel_reason, updated_at = now();

-- name: UpsertLines :exec
-- Writes the lines a batch changed: the lines of orders it decided on,
-- and the reserved flag of lines it released.
INSERT INTO shipment_lines (order_id, sku, quantity, reserved)
SELECT unnest(@order_ids::uuid[]), unnest(@skus::text[]), unnest(@quantities::bigint[]), unnest(@reserved::boolean[])
ON CONFLICT (order_id, sku) DO UPDATE SET reserved = excluded.reserved;

-- name: ShipShipments :many
-- Ships the scheduled picks of order_ids, order_ids[i] with
-- tracking_ids[i], and releases their lines; returns those it shipped (a
-- pick no longer scheduled ships nothing).
WITH shipped AS (
    UPDATE shipments AS s SET status = 'shipped', tracking_id = u.tracking_id, updated_at = now()
    FROM (SELECT unnest(@order_ids::uuid[]) AS order_id, unnest(@tracking_ids::text[]) AS tracking_id) AS u
    WHERE s.order_id = u.order_id AND s.status = 'scheduled'
    RETURNING s.order_id, s.pick_id
), released AS (
    UPDATE shipment_lines AS l SET reserved = false
    FROM shipped
    WHERE l.order_id = shipped.order_id AND l.reserved
)
SELECT order_id, pick_id FROM shipped;

-- name: SetStock :exec
INSERT INTO stock (sku, available) VALUES (@sku, @available)
ON CONFLICT (sku) DO UPDATE SET available = excluded.available, updated_at = now();

-- name: GetInventory :one
-- One statement, so available and reserved come from one snapshot.
SELECT coalesce((SELECT st.available FROM stock st WHERE st.sku = @sku::text), @default_available::bigint)::bigint AS available,
       coalesce((SELECT sum(l.quantity) FROM shipment_lines l WHERE l.sku = @sku::text AND l.reserved), 0)::bigint AS reserved;
