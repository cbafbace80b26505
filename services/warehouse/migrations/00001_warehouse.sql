-- +goose Up
-- Units on hand and free to reserve, one row per SKU, created on first
-- sight with WAREHOUSE_DEFAULT_STOCK (or by PUT /inventory/{sku}). A
-- reservation takes units off available at once; shipping changes nothing
-- here (the units already left available), a cancelled pick puts them back.
CREATE TABLE stock (
    sku        text        PRIMARY KEY,
    available  bigint      NOT NULL CHECK (available >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per order warehouse has decided on (order_id is the key, so one
-- pick per order whatever is redelivered): a pick scheduled, shipped or
-- cancelled; stock unavailable; or cancelled before its PaymentCaptured
-- arrived (no pick), so the late capture reserves nothing.
CREATE TABLE shipments (
    order_id      uuid        PRIMARY KEY,
    status        text        NOT NULL CHECK (status IN ('scheduled', 'shipped', 'cancelled', 'unavailable')),
    pick_id       uuid        UNIQUE, -- UUIDv7; null when no pick was made
    tracking_id   text,               -- set when shipped
    cancel_reason text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'shipped') = (tracking_id IS NOT NULL)),
    CHECK (status NOT IN ('scheduled', 'shipped') OR pick_id IS NOT NULL)
);

-- The order's items, one row per SKU (quantities of repeated SKUs added).
-- reserved is true while the pick is scheduled: GET /inventory sums these
-- for "reserved" through the partial index below, which holds only
-- reserved lines. Shipping and cancelling clear it on the order's own rows,
-- so the timer worker never touches a stock row.
CREATE TABLE shipment_lines (
    order_id uuid    NOT NULL REFERENCES shipments ON DELETE CASCADE,
    sku      text    NOT NULL,
    quantity bigint  NOT NULL CHECK (quantity > 0),
    reserved boolean NOT NULL,
    PRIMARY KEY (order_id, sku)
);

CREATE INDEX shipment_lines_reserved ON shipment_lines (sku) INCLUDE (quantity) WHERE reserved;

-- +goose Down
DROP TABLE shipment_lines;
DROP TABLE shipments;
DROP TABLE stock;
