-- +goose Up
-- One row per order. Status only moves forward (placed → paid → shipped, or
-- payment_failed, or cancelled); consumers of other services' events update
-- it, cancel_reason and points_awarded.
CREATE TABLE orders (
    id             uuid        PRIMARY KEY, -- UUIDv7: ordered by creation
    customer_id    text        NOT NULL,
    email          text        NOT NULL,
    items          jsonb       NOT NULL, -- [{sku, quantity, unitPriceCents}]
    total_cents    bigint      NOT NULL,
    currency       text        NOT NULL,
    payment_token  text        NOT NULL,
    status         text        NOT NULL DEFAULT 'placed',
    cancel_reason  text,
    points_awarded bigint      NOT NULL DEFAULT 0,
    correlation_id text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Idempotency-Key → the order it created. The key row is inserted first in
-- the order's transaction (INSERT ... ON CONFLICT DO NOTHING), so a
-- concurrent request with the same key waits on the unique index until the
-- first commits, then finds its row; if the first rolls back, the waiter
-- inserts instead. The order row comes later in the same transaction, hence
-- the deferred foreign key.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY,
    request_hash bytea       NOT NULL, -- sha256 of the canonical request
    order_id     uuid        NOT NULL REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Every event about an order that orders has seen, its own and other
-- services'. event_id is unique so a redelivered event adds nothing.
CREATE TABLE order_timeline (
    id          bigserial   PRIMARY KEY,
    order_id    uuid        NOT NULL REFERENCES orders (id),
    event       text        NOT NULL,
    event_id    uuid        NOT NULL UNIQUE,
    service     text        NOT NULL,
    occurred_at timestamptz NOT NULL
);

CREATE INDEX order_timeline_order ON order_timeline (order_id, occurred_at, id);

-- +goose Down
DROP TABLE order_timeline;
DROP TABLE idempotency_keys;
DROP TABLE orders;
