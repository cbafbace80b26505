-- +goose Up
-- A worker claims a task (claimed_at) before it sends, so two copies of one
-- task in hand at once (a re-published or re-forwarded message) do not both
-- send; a claim older than the stale window is taken over (its worker died
-- mid-send). The claim is a column no index covers, so taking and releasing
-- it are HOT updates, and the fill factor leaves room on each page for them.
ALTER TABLE emails ADD COLUMN claimed_at timestamptz;
ALTER TABLE emails SET (fillfactor = 70);

-- +goose Down
ALTER TABLE emails RESET (fillfactor);
ALTER TABLE emails DROP COLUMN claimed_at;
