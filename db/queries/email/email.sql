-- The notifier's batch (services/email/notify.go): the batch's rows read in
-- one statement per table, written back in one.

-- name: GetRecipients :many
SELECT order_id, customer_id, email, currency FROM recipients WHERE order_id = ANY(@order_ids::uuid[]);

-- name: TakeWaitingFor :many
-- Deletes and returns the emails waiting for the orders order_ids (those
-- whose recipient the batch learns), oldest first.
WITH taken AS (
    DELETE FROM waiting_emails WHERE order_id = ANY(@order_ids::uuid[])
    RETURNING event_id, order_id, kind, tracking_id, created_at
)
SELECT event_id, order_id, kind, tracking_id FROM taken ORDER BY created_at, event_id;

-- name: SaveRecipients :exec
-- A recipient is inserted once; later only a currency still unknown is
-- filled in (a refund's event has none).
INSERT INTO recipients (order_id, customer_id, email, currency)
SELECT unnest(@order_ids::uuid[]), unnest(@customer_ids::text[]), unnest(@emails::text[]), unnest(@currencies::text[])
ON CONFLICT (order_id) DO UPDATE SET currency = excluded.currency
WHERE recipients.currency = '' AND excluded.currency <> '';

-- name: AddWaitingEmails :exec
INSERT INTO waiting_emails (event_id, order_id, kind, tracking_id)
SELECT unnest(@event_ids::text[]), unnest(@order_ids::uuid[]), unnest(@kinds::text[]), unnest(@tracking_ids::text[])
ON CONFLICT (event_id) DO NOTHING;

-- name: InsertEmails :many
-- Returns the tasks inserted: a task missing from the answer existed (its
-- event handled again after its inbox row was pruned).
INSERT INTO emails (task_id, order_id, kind, to_addr, subject)
SELECT unnest(@task_ids::uuid[]), unnest(@order_ids::uuid[]), unnest(@kinds::text[]), unnest(@to_addrs::text[]), unnest(@subjects::text[])
ON CONFLICT (task_id) DO NOTHING
RETURNING task_id;

-- The per-record forms of the above, one order at a time: what the batch
-- is tested and benchmarked against (services/email/perrecord_test.go).

-- name: RememberRecipient :one
-- new is true when the order's recipient was not known before; no row when
-- it was and nothing changed.
INSERT INTO recipients (order_id, customer_id, email, currency)
VALUES (@order_id, @customer_id, @email, @currency)
ON CONFLICT (order_id) DO UPDATE SET currency = excluded.currency
WHERE recipients.currency = '' AND excluded.currency <> ''
RETURNING (xmax = 0)::bool AS new;

-- name: AddWaiting :exec
INSERT INTO waiting_emails (event_id, order_id, kind, tracking_id)
VALUES (@event_id, @order_id, @kind, @tracking_id)
ON CONFLICT (event_id) DO NOTHING;

-- name: TakeWaiting :many
DELETE FROM waiting_emails WHERE order_id = @order_id
RETURNING event_id, kind, tracking_id;

-- name: GetRecipient :one
SELECT customer_id, email, currency FROM recipients WHERE order_id = @order_id;

-- name: InsertEmail :execrows
-- Zero rows when the task exists (the same event handled again after its
-- inbox row was pruned).
INSERT INTO emails (task_id, order_id, kind, to_addr, subject)
VALUES (@task_id, @order_id, @kind, @to_addr, @subject)
ON CONFLICT (task_id) DO NOTHING;

-- name: ReleaseEmail :exec
-- A claim given up after a failed send.
UPDATE emails SET claimed_at = NULL WHERE task_id = @task_id;

-- name: EmailStatus :one
SELECT status FROM emails WHERE task_id = @task_id;

-- name: MarkFailed :exec
-- A failed attempt: still queued (a retry is scheduled) or dead. A sent
-- task stays sent; one claimed by another copy is left to that copy.
UPDATE emails SET status = CASE WHEN @dead::bool THEN 'dead' ELSE 'queued' END,
    attempts = @attempts, last_error = @last_error, updated_at = now()
WHERE task_id = @task_id AND status <> 'sent' AND claimed_at IS NULL;

-- name: ListEmails :many
SELECT task_id, order_id, kind, to_addr, subject, status, attempts, last_error, created_at, sent_at
FROM emails WHERE order_id = @order_id ORDER BY created_at, task_id;

-- name: OldestQueued :one
SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age_seconds
FROM emails WHERE status = 'queued';

-- name: ClaimAndMarkSent :many
-- The worker's bookkeeping for a batch of deliveries, in one statement and
-- one commit: the tasks among sent_ids are recorded sent (the SMTP server
-- accepted them), and those among claim_ids that may be sent are claimed
-- and returned: queued or dead (a replay), and not claimed, or claimed
-- longer ago than stale_seconds by a worker that must have died. A row
-- locked by another transaction (another claimer, a release) is skipped,
-- not waited for: its delivery looks again. A task in both lists is only
-- recorded sent; the copy that wanted it finds it sent.
WITH sent AS (
    UPDATE emails AS e SET status = 'sent', attempts = s.attempts, sent_at = now(), updated_at = now(), claimed_at = NULL
    FROM (SELECT unnest(@sent_ids::uuid[]) AS task_id, unnest(@attempts::int[]) AS attempts) AS s
    WHERE e.task_id = s.task_id
), claimable AS (
    SELECT task_id FROM emails
    WHERE task_id = ANY(@claim_ids::uuid[])
      AND task_id <> ALL(@sent_ids::uuid[])
      AND status IN ('queued', 'dead')
      AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => @stale_seconds::float8))
    FOR UPDATE SKIP LOCKED
)
UPDATE emails AS e SET claimed_at = now()
FROM claimable AS c
WHERE e.task_id = c.task_id
RETURNING e.task_id;
