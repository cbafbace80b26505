-- +goose Up
-- One row per event a service emitted. Rows are inserted in the same
-- transaction as the state change that caused them, published by the relay
-- in id order, marked published in bulk after the broker acked, and kept
-- for OUTBOX_RETENTION as the audit trail.
CREATE TABLE outbox (
    id             bigserial   PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    topic          text        NOT NULL,
    key            text        NOT NULL,
    event_type     text        NOT NULL,
    payload        json        NOT NULL, -- json, not jsonb: published byte for byte as written
    correlation_id text        NOT NULL DEFAULT '',
    traceparent    text        NOT NULL DEFAULT '',
    occurred_at    timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz
);

-- The relay's work list: small however large the audit trail grows.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Retention and replay select by time; BRIN costs next to nothing on insert
-- because created_at only grows.
CREATE INDEX outbox_created_at ON outbox USING brin (created_at);

-- +goose Down
DROP TABLE outbox;
