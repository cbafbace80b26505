-- +goose Up
-- One row per order loyalty decided on, keyed by order id, so an order is
-- decided (and awarded) at most once whatever is redelivered: pending while
-- its award timer runs, then awarded (the customer's award history) or
-- dropped (cancelled or refunded first). Orders worth no points have no row.
-- A customer's balance is the sum of their awarded rows: there is no
-- balance row, because the award timers fire in batches that hold many
-- orders' locks, and batches of two instances updating shared per-customer
-- rows in different orders deadlock (see fireAwards).
CREATE TABLE awards (
    order_id    uuid        PRIMARY KEY,
    customer_id text        NOT NULL,
    points      bigint      NOT NULL CHECK (points > 0),
    state       text        NOT NULL CHECK (state IN ('pending', 'awarded', 'dropped')),
    due_at      timestamptz,          -- when the award timer is due; NULL when dropped before it was scheduled
    awarded_at  timestamptz,          -- when the timer fired
    reason      text        NOT NULL DEFAULT '', -- why it was dropped
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'awarded') = (awarded_at IS NOT NULL)),
    CHECK (state <> 'pending' OR due_at IS NOT NULL)
);

-- GET /customers/{customerId}/points reads a customer's awards.
CREATE INDEX awards_customer ON awards (customer_id, created_at);

-- Orders cancelled (OrderCancelled) or refunded (PaymentRefunded). Events
-- of the orders and payments topics arrive in no fixed relative order, so
-- an OrderCancelled may come before the order's PaymentCaptured, which must
-- then schedule no award.
CREATE TABLE cancellations (
    order_id   uuid        PRIMARY KEY,
    reason     text        NOT NULL, -- the first cancellation's
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE cancellations;
DROP TABLE awards;
