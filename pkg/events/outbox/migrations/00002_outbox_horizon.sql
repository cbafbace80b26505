-- +goose Up
-- The relay's horizon in this database: rows of transactions below it have
-- all ended. pg_snapshot_xmin is the whole server's oldest running
-- transaction, so a long transaction in another service's database held
-- this relay back although it can never write here. The running
-- transactions of the snapshot (xip) are each looked up in pg_stat_activity,
-- read afresh after the snapshot was taken: one seen running in another
-- database is left out; one seen here, or no longer seen at all (it ended
-- meanwhile, wherever it ran), or without a backend (prepared), still
-- counts. So the horizon never passes a transaction that could still commit
-- rows here, and is at most pg_snapshot_xmax.
--
-- STABLE, so it sees the caller's snapshot and is run once per statement
-- when called as (SELECT outbox_horizon()).
-- +goose StatementBegin
CREATE FUNCTION outbox_horizon() RETURNS xid8
LANGUAGE sql STABLE AS $$
    SELECT pg_stat_clear_snapshot(); -- pg_stat_activity as of now, not as first read in this transaction
    SELECT coalesce(min(x), pg_snapshot_xmax(pg_current_snapshot()))
    FROM pg_snapshot_xip(pg_current_snapshot()) AS x
    WHERE x::xid NOT IN (
        SELECT a.backend_xid FROM pg_stat_activity a
        WHERE a.backend_xid IS NOT NULL AND a.datname IS DISTINCT FROM current_database()
    );
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION outbox_horizon();
