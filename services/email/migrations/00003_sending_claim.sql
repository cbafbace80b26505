-- +goose Up
-- A worker claims a task (status sending) before it sends, so two copies of
-- one task in hand at once (a re-published or re-forwarded message) do not
-- both send; a claim older than the stale window is taken over (its worker
-- died mid-send).
ALTER TABLE emails DROP CONSTRAINT emails_status_check;
ALTER TABLE emails ADD CONSTRAINT emails_status_check CHECK (status IN ('queued', 'sending', 'sent', 'dead'));
ALTER TABLE emails ADD COLUMN claimed_at timestamptz;
DROP INDEX emails_queued;
CREATE INDEX emails_queued ON emails (created_at) WHERE status IN ('queued', 'sending');

-- +goose Down
DROP INDEX emails_queued;
CREATE INDEX emails_queued ON emails (created_at) WHERE status = 'queued';
ALTER TABLE emails DROP COLUMN claimed_at;
UPDATE emails SET status = 'queued' WHERE status = 'sending';
ALTER TABLE emails DROP CONSTRAINT emails_status_check;
ALTER TABLE emails ADD CONSTRAINT emails_status_check CHECK (status IN ('queued', 'sent', 'dead'));
