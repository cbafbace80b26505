-- xid8 travels as text and is cast on both sides (sqlc and pgx have no xid8
-- type); Go sees it as uint64 text, compared only by PostgreSQL.

-- name: InsertEvent :exec
INSERT INTO outbox (event_id, topic, key, event_type, payload, correlation_id, traceparent, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- name: PendingBatch :many
-- The rows after the cursor whose transactions, and every older one that
-- could write here, have ended: that set can no longer grow behind the
-- cursor, so nothing is skipped. The horizon is pg_snapshot_xmin, the
-- server's oldest running transaction, unless that holds the next row
-- back: then outbox_horizon(), this database's (dearer to compute). Each
-- row carries the cursor it was read after, for the compare-and-set that
-- advances it (one round trip, not two). The cursor is read in
-- sub-selects, not a join: a join's row estimate for the one-row table
-- made the planner cost the scan high enough to JIT-compile it.
SELECT id, txid::text AS txid, event_id, topic, key, event_type, payload,
       correlation_id, traceparent, occurred_at,
       (SELECT c.txid::text FROM outbox_cursor c) AS cursor_txid,
       (SELECT c.id FROM outbox_cursor c) AS cursor_id
FROM outbox
WHERE (outbox.txid, outbox.id) > (SELECT c.txid, c.id FROM outbox_cursor c)
  AND outbox.txid < (
    SELECT CASE WHEN n.txid >= pg_snapshot_xmin(pg_current_snapshot()) THEN outbox_horizon()
                ELSE pg_snapshot_xmin(pg_current_snapshot()) END
    FROM (SELECT o.txid FROM outbox o
          WHERE (o.txid, o.id) > (SELECT c.txid, c.id FROM outbox_cursor c)
          ORDER BY o.txid, o.id LIMIT 1) AS n
  )
ORDER BY outbox.txid, outbox.id -- the columns, not the text alias: index order
LIMIT @batch_size;

-- name: AdvanceCursor :execrows
-- Compare-and-set from the cursor the batch was read after: if a replay, or
-- another leader after a takeover, moved it meanwhile, this update does
-- nothing, so the cursor only ever moves past rows that were published.
UPDATE outbox_cursor
SET txid = (@to_txid::text)::xid8, id = @to_id::bigint, updated_at = now()
WHERE txid = (@from_txid::text)::xid8 AND id = @from_id::bigint;

-- name: Backlog :one
SELECT count(*)::bigint AS pending,
       coalesce(extract(epoch FROM now() - min(o.created_at)), 0)::float8 AS oldest_age_seconds
FROM outbox o, outbox_cursor c
WHERE (o.txid, o.id) > (c.txid, c.id);

-- name: DeleteExpired :execrows
DELETE FROM outbox
WHERE outbox.id IN (
    SELECT o.id FROM outbox o, outbox_cursor c
    WHERE o.created_at < @cutoff AND (o.txid, o.id) <= (c.txid, c.id)
    LIMIT @batch_size
);

-- name: FirstSince :one
SELECT txid::text AS txid, id FROM outbox
WHERE created_at >= @since
ORDER BY outbox.txid, outbox.id
LIMIT 1;

-- name: RewindCursor :execrows
-- Moves the cursor back to (to_txid, to_id), never forward.
UPDATE outbox_cursor
SET txid = (@to_txid::text)::xid8, id = @to_id::bigint, updated_at = now()
WHERE (txid, id) > ((@to_txid::text)::xid8, @to_id::bigint);

-- name: HeldBack :one
-- Whether committed rows wait behind a transaction still running here: the
-- relay then looks again soon instead of waiting for a wake-up that may not
-- come. The first row after the cursor, read in index order, decides: written
-- as EXISTS the planner may scan the whole table when none is left. Its
-- horizon is PendingBatch's.
SELECT coalesce((
    SELECT CASE WHEN o.txid < pg_snapshot_xmin(pg_current_snapshot()) THEN false
                ELSE o.txid >= outbox_horizon() END
    FROM outbox o
    WHERE (o.txid, o.id) > (SELECT c.txid, c.id FROM outbox_cursor c)
    ORDER BY o.txid, o.id
    LIMIT 1
), false)::bool AS held_back;

-- name: CursorGuard :one
-- Whether the outbox's txids come from another cluster's future, as after
-- a restore into, or a move to, a server whose transaction counter is
-- behind: then new rows sort below the cursor (cursor_ahead) or old ones
-- wait for a horizon that will not reach them for ages (rows_ahead), and
-- nothing would ever be published. next_txid is the next transaction id
-- this server gives out, which draws none itself (no pg_current_xact_id).
-- max(txid) is read from the top of the (txid, id) index.
SELECT c.txid::text AS cursor_txid,
       pg_snapshot_xmax(pg_current_snapshot())::text AS next_txid,
       (c.txid >= pg_snapshot_xmax(pg_current_snapshot()))::bool AS cursor_ahead,
       coalesce((SELECT max(o.txid) FROM outbox o) >= pg_snapshot_xmax(pg_current_snapshot()), false)::bool AS rows_ahead
FROM outbox_cursor c;

-- name: LockCursor :exec
SELECT 1 FROM outbox_cursor FOR UPDATE;

-- name: RebaseRows :execrows
-- Renumbers the txids after a move (see Rebase in package outbox): rows
-- published before it to 1, the rest (published later, in id order) to 2.
-- Rows with a txid from the other cluster's future are the old cluster's:
-- published when at or before the cursor. Rows with a txid below the next
-- one are either the old cluster's, all at or before the cursor and so
-- published, or written since the move and never published; the id tells
-- them apart (the sequence came with the data, so every new row's id is
-- above every old one's: above the old rows' highest id, and the cursor's).
WITH bound AS (
    SELECT pg_snapshot_xmax(pg_current_snapshot()) AS next_txid,
           greatest((SELECT max(o.id) FROM outbox o WHERE o.txid >= pg_snapshot_xmax(pg_current_snapshot())),
                    (SELECT c.id FROM outbox_cursor c)) AS old_max_id,
           (SELECT c.txid FROM outbox_cursor c) AS cursor_txid,
           (SELECT c.id FROM outbox_cursor c) AS cursor_id
)
UPDATE outbox o
SET txid = CASE
    WHEN (o.txid, o.id) <= (b.cursor_txid, b.cursor_id) AND (o.txid >= b.next_txid OR o.id <= b.old_max_id)
        THEN '1'::xid8
    ELSE '2'::xid8 END
FROM bound b;

-- name: RebaseCursor :exec
-- After RebaseRows: every row at txid 1 is behind the cursor.
UPDATE outbox_cursor SET txid = '1'::xid8, id = 9223372036854775807, updated_at = now();

-- name: InsertEvents :exec
-- InsertEvent for many rows in one statement. The set-returning functions
-- in the select list yield the arrays' elements side by side and in order,
-- so ids (and with them the relay's order within the transaction) follow
-- the arrays.
INSERT INTO outbox (event_id, topic, key, event_type, payload, correlation_id, traceparent, occurred_at)
SELECT unnest(@event_ids::uuid[]), unnest(@topics::text[]), unnest(@keys::text[]), unnest(@event_types::text[]),
       unnest(@payloads::text[])::json, unnest(@correlation_ids::text[]), unnest(@traceparents::text[]),
       unnest(@occurred_ats::timestamptz[]);
