package email

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/services/email/internal/emaildb"
)

// One ledger batch claims and records sent at once: a claimable task is
// claimed for its first copy only; a task recorded sent in the same batch
// as a copy's claim is not claimed, and reads sent after it; a task
// claimed by someone else is not claimed until the claim goes stale; a
// sent task is never claimed again.
func TestLedgerBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	q := emaildb.New(pool)
	insert := func(claimedAgo time.Duration) uuid.UUID {
		t.Helper()
		id := uuid.New()
		if _, err := q.InsertEmail(ctx, emaildb.InsertEmailParams{TaskID: id, OrderID: uuid.New(), Kind: kindConfirmation, ToAddr: "a@example.com", Subject: "s"}); err != nil {
			t.Fatal(err)
		}
		if claimedAgo > 0 {
			if _, err := pool.Exec(ctx, "UPDATE emails SET claimed_at = now() - $2::interval WHERE task_id = $1", id, claimedAgo.String()); err != nil {
				t.Fatal(err)
			}
		}
		return id
	}
	free, finishing, held, stale := insert(0), insert(time.Hour), insert(time.Second), insert(time.Hour)
	const staleAfter = time.Minute
	l := newLedger(pool, staleAfter)
	got, err := l.flush(ctx, []entry{
		{id: free}, {id: free}, // two copies: the first gets it
		{id: finishing, sent: true, attempt: 2}, {id: finishing}, // sent by a slow claimer as a copy takes over
		{id: held}, {id: stale},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false, false, false, false, true}; !slices.Equal(got, want) {
		t.Errorf("claimed %v, want %v", got, want)
	}
	if s, err := q.EmailStatus(ctx, finishing); err != nil || s != "sent" {
		t.Errorf("the task recorded sent reads %q (%v)", s, err)
	}
	got, err = l.flush(ctx, []entry{{id: finishing}})
	if err != nil || got[0] {
		t.Errorf("a sent task claimed again: %v (%v)", got, err)
	}
}
