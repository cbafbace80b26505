-- name: Schedule :execrows
-- One row when the timer is new; none when (kind, key) exists, whatever its
-- state: scheduling is idempotent.
INSERT INTO timers (kind, key, due_at, payload)
VALUES (@kind, sqlc.arg(key), @due_at, @payload)
ON CONFLICT (kind, key) DO NOTHING;

-- name: ScheduleAll :many
-- Schedule for many timers in one statement: returns the (kind, key) of
-- those that were new.
INSERT INTO timers (kind, key, due_at, payload)
SELECT unnest(@kinds::text[]), unnest(@keys::text[]), unnest(@due_ats::timestamptz[]), unnest(@payloads::bytea[])
ON CONFLICT (kind, key) DO NOTHING
RETURNING kind, key;

-- name: CancelAll :many
-- Cancel for many keys of one kind: returns the keys whose timer was
-- pending.
UPDATE timers SET state = 'cancelled', done_at = now()
WHERE kind = @kind AND key = ANY(@keys::text[]) AND state = 'pending'
RETURNING key;

-- name: MarkAllFired :exec
UPDATE timers SET state = 'fired', done_at = now() WHERE id = ANY(@ids::bigint[]);

-- name: Cancel :execrows
UPDATE timers SET state = 'cancelled', done_at = now()
WHERE kind = @kind AND key = @key AND state = 'pending';

-- name: Get :one
SELECT id, kind, key, due_at, payload, attempts, state, last_error
FROM timers
WHERE kind = @kind AND key = @key;

-- name: Due :many
-- Step 1 of a claim: a plain read, no row locks, so that no transaction id
-- is assigned before the keys' locks are taken.
SELECT id, key FROM timers
WHERE state = 'pending' AND due_at <= now() AND kind = ANY(@kinds::text[])
ORDER BY due_at
LIMIT @batch_size;

-- name: Claim :many
-- Step 3, after the keys' locks: the rows still pending and due (another
-- worker may have fired them since Due), locked for this transaction.
SELECT id, kind, key, due_at, payload, attempts
FROM timers
WHERE id = ANY(@ids::bigint[]) AND state = 'pending' AND due_at <= now()
ORDER BY due_at
FOR UPDATE SKIP LOCKED;

-- name: MarkFired :exec
UPDATE timers SET state = 'fired', done_at = now() WHERE id = @id;

-- name: Reschedule :exec
UPDATE timers
SET attempts = attempts + 1,
    last_error = @last_error,
    due_at = now() + make_interval(secs => @delay_seconds::float8)
WHERE id = @id;

-- name: NextDue :one
-- Seconds until the earliest pending timer of the given kinds is due
-- (negative when overdue, +Infinity when none is pending), by the
-- database's clock, which is the one Due compares with.
SELECT coalesce(extract(epoch FROM min(due_at) - now())::float8, 'Infinity')::float8 AS seconds
FROM timers
WHERE state = 'pending' AND kind = ANY(@kinds::text[]);

-- name: Unhandled :many
-- Kinds of due timers the worker has no Fire func for.
SELECT DISTINCT kind FROM timers
WHERE state = 'pending' AND due_at <= now() AND kind <> ALL(@kinds::text[]);

-- name: PendingByKind :many
SELECT kind, count(*)::bigint AS pending
FROM timers
WHERE state = 'pending'
GROUP BY kind;

-- name: Prune :execrows
DELETE FROM timers
WHERE id IN (
    SELECT t.id FROM timers t
    WHERE t.state <> 'pending' AND t.done_at < @cutoff::timestamptz
    LIMIT @batch_size
);
