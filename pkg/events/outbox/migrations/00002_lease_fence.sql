-- +goose Up
-- Whether the relay session lease_pid still holds an advisory lock in this
-- database: AdvanceCursor checks it, so a relay that lost its lease cannot
-- move the cursor.
-- +goose StatementBegin
CREATE FUNCTION outbox_lease_held(lease_pid integer) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND pid = lease_pid
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    )
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION outbox_lease_held(integer);
