-- name: GetShipment :one
SELECT * FROM shipments WHERE order_id = $1;

-- name: InsertShipment :exec
INSERT INTO shipments (order_id, status, pick_id)
VALUES (@order_id, @status, sqlc.narg(pick_id));

-- name: InsertLines :exec
INSERT INTO shipment_lines (order_id, sku, quantity, reserved)
SELECT @order_id, unnest(@skus::text[]), unnest(@quantities::bigint[]), @reserved;

-- name: ListLines :many
SELECT sku, quantity FROM shipment_lines WHERE order_id = $1 ORDER BY sku COLLATE "C";

-- name: FlagCancelled :exec
-- Remembers a cancellation that came before the order's PaymentCaptured;
-- nothing when the order has a row already.
INSERT INTO shipments (order_id, status, cancel_reason)
VALUES (@order_id, 'cancelled', @cancel_reason)
ON CONFLICT (order_id) DO NOTHING;

-- name: CancelShipment :one
-- Cancels a scheduled pick; no row when it is not scheduled.
UPDATE shipments SET status = 'cancelled', cancel_reason = @cancel_reason, updated_at = now()
WHERE order_id = @order_id AND status = 'scheduled'
RETURNING *;

-- name: ShipShipment :one
-- Ships a scheduled pick; no row when it is not scheduled.
UPDATE shipments SET status = 'shipped', tracking_id = @tracking_id, updated_at = now()
WHERE order_id = @order_id AND status = 'scheduled'
RETURNING *;

-- name: ReleaseLines :many
-- The order's reserved lines stop counting as reserved.
UPDATE shipment_lines SET reserved = false
WHERE order_id = $1 AND reserved
RETURNING sku, quantity;

-- name: LockedMaxSKU :one
-- The greatest SKU whose stock row this transaction has locked ('' for
-- none); see lockStock.
SELECT coalesce(current_setting('warehouse.stock_locked_max', true), '')::text AS sku;

-- name: SetLockedMaxSKU :exec
SELECT set_config('warehouse.stock_locked_max', @sku::text, true);

-- name: LockStock :exec
-- Locks the stock rows of skus one after the other in byte order, creating
-- the missing ones with default_available: a conflicting row is locked
-- (FOR NO KEY UPDATE, the WHERE false keeps it unchanged), a new row is
-- held by its insert. Each SKU is taken before the next, waiting if
-- another transaction holds it.
INSERT INTO stock (sku, available)
SELECT s.sku, @default_available::bigint
FROM unnest(@skus::text[]) AS s (sku)
ORDER BY s.sku COLLATE "C"
ON CONFLICT (sku) DO UPDATE SET available = stock.available WHERE false;

-- name: LockStockNowait :many
-- Locks existing stock rows without waiting (an error when another
-- transaction holds one) and returns the SKUs it locked.
SELECT sku FROM stock
WHERE sku = ANY(@skus::text[])
ORDER BY sku COLLATE "C"
FOR NO KEY UPDATE NOWAIT;

-- name: GetStockLevels :many
SELECT sku, available FROM stock WHERE sku = ANY(@skus::text[]);

-- name: AddStock :exec
-- Adds deltas[i] to the available units of skus[i]; the rows are locked
-- by the caller (lockStock).
UPDATE stock AS s SET available = s.available + d.delta, updated_at = now()
FROM (SELECT unnest(@skus::text[]) AS sku, unnest(@deltas::bigint[]) AS delta) AS d
WHERE s.sku = d.sku;

-- name: SetStock :exec
INSERT INTO stock (sku, available) VALUES (@sku, @available)
ON CONFLICT (sku) DO UPDATE SET available = excluded.available, updated_at = now();

-- name: GetInventory :one
-- One statement, so available and reserved come from one snapshot.
SELECT coalesce((SELECT st.available FROM stock st WHERE st.sku = @sku::text), @default_available::bigint)::bigint AS available,
       coalesce((SELECT sum(l.quantity) FROM shipment_lines l WHERE l.sku = @sku::text AND l.reserved), 0)::bigint AS reserved;
