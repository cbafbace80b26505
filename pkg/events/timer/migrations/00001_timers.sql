-- +goose Up
-- One row per durable timer (package timer), unique per (kind, key): pending
-- until the worker fires it or a caller cancels it. Fired and cancelled rows
-- are kept for the worker's retention, so scheduling the same timer again
-- stays a no-op, and then pruned.
CREATE TABLE timers (
    id         bigserial   PRIMARY KEY,
    kind       text        NOT NULL,
    key        text        NOT NULL,
    due_at     timestamptz NOT NULL,
    payload    bytea,
    state      text        NOT NULL DEFAULT 'pending'
               CHECK (state IN ('pending', 'fired', 'cancelled')),
    attempts   int         NOT NULL DEFAULT 0,  -- failed Fire calls so far
    last_error text        NOT NULL DEFAULT '', -- of the last failed call
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at    timestamptz,                     -- when it fired or was cancelled
    UNIQUE (kind, key),
    CHECK ((state = 'pending') = (done_at IS NULL))
);

-- The worker's due query and its sleep until the next timer read pending
-- rows in due order; done rows, the bulk of the table, stay out of it.
CREATE INDEX timers_due ON timers (due_at) WHERE state = 'pending';

-- Pruning selects done rows by age.
CREATE INDEX timers_done_at ON timers (done_at) WHERE state <> 'pending';

-- +goose Down
DROP TABLE timers;
