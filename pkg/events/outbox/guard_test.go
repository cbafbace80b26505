package outbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/outbox"
)

// A database restored into a cluster whose transaction counter is behind
// (simulated by moving every txid and the cursor a billion ahead): the
// relay refuses to publish and says why on Ready instead of silently
// publishing nothing, and Rebase brings it back: the rows the old cluster
// had not published, then those written since, each order's in order,
// none of the published ones again.
func TestCursorGuardAndRebase(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if _, err := outbox.Rebase(ctx, b.pool); !errors.Is(err, outbox.ErrNothingToRebase) {
		t.Fatalf("Rebase of a sound outbox = %v, want ErrNothingToRebase", err)
	}
	a, c := uuid.NewString(), uuid.NewString()
	got := consume(t, b.broker.Addrs, map[string]bool{a: true, c: true})
	o := b.newOutbox(t, nil)
	relay := startRelay(t, o)

	var wantA []string
	for range 3 {
		wantA = append(wantA, write(t, ctx, b.pool, o, placed(a))...)
	}
	got.waitDistinct(t, 3)
	relay.Halt(t)
	for range 2 { // written, not yet published when the database was copied
		wantA = append(wantA, write(t, ctx, b.pool, o, cancelled(a))...)
	}
	for _, sql := range []string{
		"UPDATE outbox SET txid = (txid::text::numeric + 1000000000)::text::xid8",
		"UPDATE outbox_cursor SET txid = (txid::text::numeric + 1000000000)::text::xid8",
	} {
		if _, err := b.pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}

	o = b.newOutbox(t, nil)
	startRelay(t, o)
	testenv.WaitFor(t, 20*time.Second, "Ready to report the guard", func() bool {
		err := o.Ready(ctx)
		return errors.Is(err, outbox.ErrTxidsAhead) && strings.Contains(err.Error(), "orderflowctl outbox rebase")
	})
	wantC := write(t, ctx, b.pool, o, placed(c)) // written since the move
	time.Sleep(300 * time.Millisecond)           // a relay that ignored the guard would publish now
	if err := o.Ready(ctx); !errors.Is(err, outbox.ErrTxidsAhead) {
		t.Fatalf("Ready = %v, want the guard's error", err)
	}
	got.mu.Lock()
	published := got.total
	got.mu.Unlock()
	if published != 3 {
		t.Fatalf("%d records published with the guard tripped, want 3 (from before the move)", published)
	}

	pending, err := outbox.Rebase(ctx, b.pool)
	if err != nil || pending != 3 {
		t.Fatalf("Rebase = %d, %v; want 3 pending (2 old, 1 new)", pending, err)
	}
	got.waitDistinct(t, 6)
	if dups := got.checkOrder(t, map[string][]string{a: wantA, c: wantC}); dups != 0 {
		t.Errorf("%d records published twice", dups)
	}
	testenv.WaitFor(t, 20*time.Second, "ready after the rebase", func() bool { return o.Ready(ctx) == nil })
	// The relay goes on as usual after the rebase.
	more := write(t, ctx, b.pool, o, cancelled(c))
	got.waitDistinct(t, 7)
	got.checkOrder(t, map[string][]string{c: append(wantC, more...)})
	if _, err := outbox.Rebase(ctx, b.pool); !errors.Is(err, outbox.ErrNothingToRebase) {
		t.Errorf("second Rebase = %v, want ErrNothingToRebase", err)
	}
}
