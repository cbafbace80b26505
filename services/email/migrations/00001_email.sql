-- +goose Up
-- One row per email task: written with its SendEmail outbox row in the
-- notifier's transaction (status queued), then moved by the worker: sent
-- once the SMTP server accepted it (recorded before the message is acked,
-- so a redelivery finds it and sends nothing), or dead once parked.
CREATE TABLE emails (
    task_id     uuid        PRIMARY KEY, -- derived from the causing event's id
    order_id    uuid        NOT NULL,
    kind        text        NOT NULL, -- confirmation | payment_failed | shipped | refunded
    to_addr     text        NOT NULL,
    subject     text        NOT NULL,
    status      text        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'dead')),
    attempts    int         NOT NULL DEFAULT 0,
    last_error  text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX emails_order ON emails (order_id, created_at);
-- The oldest task not yet sent, for the queue-age metric.
CREATE INDEX emails_queued ON emails (created_at) WHERE status = 'queued';

-- Each order's recipient, from whichever event told it first: OrderShipped
-- carries no address, and events of different topics arrive in no fixed
-- order.
CREATE TABLE recipients (
    order_id    uuid        PRIMARY KEY,
    customer_id text        NOT NULL,
    email       text        NOT NULL,
    currency    text        NOT NULL DEFAULT '', -- for refunds, whose event has none
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE recipients;
DROP TABLE emails;
