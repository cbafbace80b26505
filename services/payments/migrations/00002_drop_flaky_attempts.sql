-- +goose Up
-- tok_flaky's failures are counted in the process now (consume.go,
-- flakyGateway): counted here, on a second pool connection inside the
-- handler's transaction, flaky charges could take every connection and
-- wait on each other for ever.
DROP TABLE flaky_attempts;

-- +goose Down
CREATE TABLE flaky_attempts (
    order_id uuid PRIMARY KEY,
    n        int  NOT NULL
);
