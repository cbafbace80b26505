-- +goose Up
-- One row per event a service emitted, inserted in the same transaction as
-- the state change that caused it, and kept for OUTBOX_RETENTION after it
-- was published, as the audit trail.
CREATE TABLE outbox (
    id             bigserial   PRIMARY KEY,
    -- The writing transaction's id. The relay publishes in (txid, id) order
    -- and only rows whose transaction is older than every transaction still
    -- running (pg_snapshot_xmin), so a row can never appear behind its
    -- cursor: see package outbox.
    txid           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid        NOT NULL,
    topic          text        NOT NULL,
    key            text        NOT NULL,
    event_type     text        NOT NULL,
    payload        json        NOT NULL, -- json, not jsonb: published byte for byte as written
    correlation_id text        NOT NULL DEFAULT '',
    traceparent    text        NOT NULL DEFAULT '',
    occurred_at    timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_relay_order ON outbox (txid, id);

-- Retention and replay select by time; BRIN costs next to nothing on insert
-- because created_at only grows.
CREATE INDEX outbox_created_at ON outbox USING brin (created_at);

-- The relay's position: every row at or before (txid, id) is published.
-- One row; the relay advances it after the broker acked a batch, replay
-- moves it back. Marking a batch is one tiny update, not one per row.
CREATE TABLE outbox_cursor (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    txid       xid8        NOT NULL DEFAULT '0',
    id         bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO outbox_cursor DEFAULT VALUES;

-- +goose Down
DROP TABLE outbox_cursor;
DROP TABLE outbox;
