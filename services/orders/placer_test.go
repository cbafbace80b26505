package orders

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/outbox"
)

// placerStore is a store on a fresh orders database whose placer's slots
// the test holds: requests queue until release is called.
func placerStore(t *testing.T) (s *Store, pool *pgxpool.Pool, release func()) {
	t.Helper()
	pool = pgtest.NewPool(t)
	if err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	s = NewStore(pool, outbox.New(pool, outbox.Config{Service: serviceName}, slog.New(slog.DiscardHandler)))
	for range cap(s.placer.slots) {
		s.placer.slots <- struct{}{}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			for range cap(s.placer.slots) {
				<-s.placer.slots
			}
		})
	}
	t.Cleanup(release)
	return s, pool, release
}

func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "the orders queued", func() bool {
		s.placer.mu.Lock()
		defer s.placer.mu.Unlock()
		return len(s.placer.queued) == n
	})
}

// placeAll places one order per id concurrently and returns each one's
// error.
func placeAll(ctx context.Context, s *Store, ids []uuid.UUID) []error {
	req := orderRequest{CustomerID: "c-1", Email: "ada@example.com", Currency: "EUR", PaymentToken: "tok_visa",
		Items: []orderItem{{SKU: "book-1", Quantity: 1, UnitPriceCents: 1250}}}
	items, _ := json.Marshal(req.Items)
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { _, errs[i] = s.placeOrder(ctx, req, id, items) })
	}
	wg.Wait()
	return errs
}

func newIDs(n int) []uuid.UUID {
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
	}
	return ids
}

func count(t *testing.T, pool *pgxpool.Pool, query string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Orders that arrive together are written together: every one with its
// timeline entry and its OrderPlaced, in one transaction, not fifty.
func TestOrdersArrivingTogetherCommitTogether(t *testing.T) {
	t.Parallel()
	s, pool, release := placerStore(t)
	ids := newIDs(50)
	var errs []error
	done := make(chan struct{})
	go func() { defer close(done); errs = placeAll(context.Background(), s, ids) }()
	waitQueued(t, s, len(ids))
	release()
	<-done
	for i, err := range errs {
		if err != nil {
			t.Errorf("order %d: %v", i, err)
		}
	}
	for table, q := range map[string]string{
		"orders":   "SELECT count(*) FROM orders",
		"timeline": "SELECT count(*) FROM order_timeline WHERE event = 'OrderPlaced'",
		"outbox":   "SELECT count(*) FROM outbox WHERE event_type = 'OrderPlaced' AND key IN (SELECT id::text FROM orders)",
	} {
		if n := count(t, pool, q); n != len(ids) {
			t.Errorf("%s: %d rows; want %d", table, n, len(ids))
		}
	}
	if n := count(t, pool, "SELECT count(DISTINCT txid) FROM outbox"); n > placerSlots {
		t.Errorf("the 50 orders were written in %d transactions; want at most %d (one per writer slot)", n, placerSlots)
	}
}

// A batch that fails is written again order by order: the order that
// cannot be written (its id is taken) fails alone, the others are placed.
func TestABadOrderFailsAlone(t *testing.T) {
	t.Parallel()
	s, pool, release := placerStore(t)
	taken := uuid.Must(uuid.NewV7())
	release()
	if errs := placeAll(context.Background(), s, []uuid.UUID{taken}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	for range cap(s.placer.slots) {
		s.placer.slots <- struct{}{}
	}
	ids := append(newIDs(9), taken)
	var errs []error
	done := make(chan struct{})
	go func() { defer close(done); errs = placeAll(context.Background(), s, ids) }()
	waitQueued(t, s, len(ids))
	for range cap(s.placer.slots) {
		<-s.placer.slots
	}
	<-done
	for i, err := range errs {
		var pgErr *pgconn.PgError
		switch {
		case ids[i] == taken && !(errors.As(err, &pgErr) && pgErr.Code == "23505"):
			t.Errorf("the order with a taken id: %v; want a unique violation", err)
		case ids[i] != taken && err != nil:
			t.Errorf("order %d failed with the bad one: %v", i, err)
		}
	}
	if n := count(t, pool, "SELECT count(*) FROM orders"); n != 10 {
		t.Errorf("%d orders; want 10 (the first and 9 of the batch)", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM outbox"); n != 10 {
		t.Errorf("%d OrderPlaced events; want 10", n)
	}
}

// A request that gives up while queued leaves the queue and writes
// nothing.
func TestACancelledOrderIsNotWritten(t *testing.T) {
	t.Parallel()
	s, pool, release := placerStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []error)
	go func() { done <- placeAll(ctx, s, newIDs(1)) }()
	waitQueued(t, s, 1)
	cancel()
	if errs := <-done; !errors.Is(errs[0], context.Canceled) {
		t.Fatalf("err %v; want context.Canceled", errs[0])
	}
	waitQueued(t, s, 0)
	release()
	if errs := placeAll(context.Background(), s, newIDs(1)); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if n := count(t, pool, "SELECT count(*) FROM orders"); n != 1 {
		t.Errorf("%d orders; want only the one not cancelled", n)
	}
}
