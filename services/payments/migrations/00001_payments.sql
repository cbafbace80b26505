-- +goose Up
-- One row per order payments has decided on: at most one capture per order,
-- whatever is redelivered (order_id is the key).
CREATE TABLE payments (
    order_id     uuid        PRIMARY KEY,
    payment_id   uuid        NOT NULL, -- UUIDv7
    customer_id  text        NOT NULL,
    email        text        NOT NULL,
    amount_cents bigint      NOT NULL,
    currency     text        NOT NULL,
    items        jsonb       NOT NULL, -- [{sku, quantity, unitPriceCents}]
    status       text        NOT NULL CHECK (status IN ('captured', 'failed', 'refunded')),
    reason       text        NOT NULL DEFAULT '',
    attempts     int         NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Cancellations (OrderCancelled, StockUnavailable) seen before the order's
-- OrderPlaced: events of different topics arrive in no fixed order, and a
-- later OrderPlaced must then capture nothing.
CREATE TABLE order_flags (
    order_id      uuid        PRIMARY KEY,
    cancelled     boolean     NOT NULL DEFAULT false,
    cancel_reason text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Charge attempts of the fake gateway's tok_flaky, counted outside the
-- handler's transaction so the count survives its rollback.
CREATE TABLE flaky_attempts (
    order_id uuid PRIMARY KEY,
    n        int  NOT NULL
);

-- +goose Down
DROP TABLE flaky_attempts;
DROP TABLE order_flags;
DROP TABLE payments;
