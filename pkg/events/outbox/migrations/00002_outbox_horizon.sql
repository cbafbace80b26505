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
-- It costs a few tenths of a millisecond (it reads every backend's
-- status), so the relay's queries call it only when pg_snapshot_xmin holds
-- the next row back. STABLE, so it sees the caller's snapshot.
-- +goose StatementBegin
CREATE FUNCTION outbox_horizon() RETURNS xid8
LANGUAGE sql STABLE AS $$
    SELECT pg_stat_clear_snapshot(); -- pg_stat_activity as of now, not as first read in this transaction
    SELECT coalesce(min(x), pg_snapshot_xmax(pg_current_snapshot()))
    FROM pg_snapshot_xip(pg_current_snapshot()) AS x
    WHERE x::xid NOT IN (
        SELECT a.backend_xid FROM pg_stat_get_activity(NULL) a -- the view would join roles and databases too
        WHERE a.backend_xid IS NOT NULL
          AND a.datid IS DISTINCT FROM (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
    );
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION outbox_horizon();
