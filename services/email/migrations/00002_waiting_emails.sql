-- +goose Up
-- Emails whose recipient is not known yet: an OrderShipped handled before
-- any event naming the order's address (events of different topics arrive
-- in no fixed order, and the email consumer may lag on one). The first
-- event that names the recipient queues them.
CREATE TABLE waiting_emails (
    event_id    text        PRIMARY KEY, -- the causing event's id, from which the task id derives
    order_id    uuid        NOT NULL,
    kind        text        NOT NULL,
    tracking_id text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX waiting_emails_order ON waiting_emails (order_id);

-- +goose Down
DROP TABLE waiting_emails;
