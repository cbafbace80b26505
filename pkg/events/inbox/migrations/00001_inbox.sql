-- +goose Up
-- One row per event a consumer handled, inserted in the same transaction as
-- the handler's effect: a redelivered event finds its row and changes
-- nothing. Kept for the inbox retention (see package inbox), then pruned.
CREATE TABLE processed_events (
    event_id     uuid        PRIMARY KEY,
    topic        text        NOT NULL,
    partition    int         NOT NULL,
    "offset"     bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Pruning selects by time; processed_at only grows, so BRIN costs next to
-- nothing on insert.
CREATE INDEX processed_events_processed_at ON processed_events USING brin (processed_at);

-- +goose Down
DROP TABLE processed_events;
