-- +goose Up
-- When orders recorded each timeline event (occurred_at is when its
-- producer says it happened): the difference is how far behind orders'
-- view is, which the choreography benchmark measures. clock_timestamp(), not
-- now(): a consumer batch's transaction may start well before an event in it
-- is applied.
ALTER TABLE order_timeline ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT clock_timestamp();

-- +goose Down
ALTER TABLE order_timeline DROP COLUMN recorded_at;
