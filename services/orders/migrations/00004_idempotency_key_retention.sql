-- +goose Up
-- Idempotency keys are kept IDEMPOTENCY_KEY_RETENTION (default 24h), then
-- pruned by time; created_at only grows, so BRIN costs next to nothing on
-- insert.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys USING brin (created_at);

-- +goose Down
DROP INDEX idempotency_keys_created_at;
