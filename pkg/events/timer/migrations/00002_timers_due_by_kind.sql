-- +goose Up
-- The worker's two reads (Due, NextDue) ask for the pending timers of its
-- kinds by due time: one index answers both, in order, where the planner
-- used to AND a bitmap of every due row with one of every row of the kind.
CREATE INDEX timers_pending_due ON timers (kind, due_at) WHERE state = 'pending';
DROP INDEX timers_due;
-- Timers are a queue: every one is inserted, updated once when it fires and
-- deleted later, so dead row versions pile up at the front of the pending
-- index, where every read starts. Vacuum and analyze after a thousand
-- changes rather than after a fifth of the table, as queue tables want.
ALTER TABLE timers SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 1000
);

-- +goose Down
ALTER TABLE timers RESET (
    autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_analyze_scale_factor, autovacuum_analyze_threshold
);
CREATE INDEX timers_due ON timers (due_at) WHERE state = 'pending';
DROP INDEX timers_pending_due;
