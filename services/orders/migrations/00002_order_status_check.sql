-- +goose Up
-- The statuses of DESIGN.md, and a cancel reason on cancelled orders only,
-- so a bug in a status rule fails its transaction instead of storing an
-- order no client can make sense of.
ALTER TABLE orders
    ADD CONSTRAINT orders_status_known
        CHECK (status IN ('placed', 'paid', 'shipped', 'payment_failed', 'cancelled')),
    ADD CONSTRAINT orders_cancel_reason_when_cancelled
        CHECK ((status = 'cancelled') = (cancel_reason IS NOT NULL));

-- +goose Down
ALTER TABLE orders
    DROP CONSTRAINT orders_cancel_reason_when_cancelled,
    DROP CONSTRAINT orders_status_known;
