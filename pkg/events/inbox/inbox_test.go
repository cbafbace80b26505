package inbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/events/inbox"
	"github.com/orderflow/orderflow/pkg/postgres"
)

func setup(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.NewPool(t)
	if err := inbox.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

func claim(t *testing.T, pool *pgxpool.Pool, id uuid.UUID, commit bool) bool {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	fresh, err := inbox.Claim(ctx, tx, id, "orders", 3, 42)
	if err != nil {
		t.Fatal(err)
	}
	if commit {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return fresh
}

func TestClaim(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	id := uuid.New()

	if !claim(t, pool, id, false) {
		t.Fatal("first claim (rolled back) not fresh")
	}
	if !claim(t, pool, id, true) {
		t.Fatal("claim after a rollback not fresh")
	}
	if claim(t, pool, id, true) {
		t.Fatal("second committed claim fresh")
	}
	if !claim(t, pool, uuid.New(), true) {
		t.Fatal("other event not fresh")
	}
	var topic string
	var partition int32
	var offset int64
	err := pool.QueryRow(context.Background(),
		`SELECT topic, partition, "offset" FROM processed_events WHERE event_id = $1`, id).Scan(&topic, &partition, &offset)
	if err != nil || topic != "orders" || partition != 3 || offset != 42 {
		t.Fatalf("row = %s/%d@%d, %v", topic, partition, offset, err)
	}
}

// A second claim of the same id, in a transaction running beside the first,
// waits for the first and is a duplicate once it commits.
func TestClaimConcurrent(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	id := uuid.New()

	tx1, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback(ctx)
	if fresh, err := inbox.Claim(ctx, tx1, id, "orders", 0, 1); err != nil || !fresh {
		t.Fatalf("tx1 claim = %v, %v", fresh, err)
	}
	second := make(chan bool, 1)
	go func() {
		var fresh bool
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var err error
			fresh, err = inbox.Claim(ctx, tx, id, "orders", 0, 1)
			return err
		})
		if err != nil {
			t.Error(err)
		}
		second <- fresh
	}()
	select {
	case <-second:
		t.Fatal("second claim did not wait for the first transaction")
	case <-time.After(100 * time.Millisecond):
	}
	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if <-second {
		t.Fatal("second claim fresh after the first committed")
	}
}

func TestPrune(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	// 25,000 old rows (more than two batches) and 10 recent ones.
	_, err := pool.Exec(ctx, `
		INSERT INTO processed_events (event_id, topic, partition, "offset", processed_at)
		SELECT gen_random_uuid(), 'orders', 0, g, now() - interval '15 days' FROM generate_series(1, 25000) g`)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		claim(t, pool, uuid.New(), true)
	}
	n, err := inbox.Prune(ctx, pool, time.Now().Add(-inbox.DefaultRetention))
	if err != nil || n != 25000 {
		t.Fatalf("Prune = %d, %v; want 25000", n, err)
	}
	var left int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM processed_events").Scan(&left); err != nil || left != 10 {
		t.Fatalf("left %d rows, %v; want 10", left, err)
	}
}

// Pruning is short transactions: each DELETE removes at most
// postgres.HousekeepingBatch rows on its own, so none holds the database's
// horizon, which its outbox relay waits behind, for long.
func TestPruneInShortTransactions(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
		INSERT INTO processed_events (event_id, topic, partition, "offset", processed_at)
		SELECT gen_random_uuid(), 'orders', 0, g, now() - interval '15 days' FROM generate_series(1, 2500) g`)
	if err != nil {
		t.Fatal(err)
	}
	tr := &deleteTracer{}
	cfg := pool.Config().Copy()
	cfg.ConnConfig.Tracer = tr
	traced, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer traced.Close()
	if n, err := inbox.Prune(ctx, traced, time.Now().Add(-inbox.DefaultRetention)); err != nil || n != 2500 {
		t.Fatalf("Prune = %d, %v; want 2500", n, err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.rows) < 3 {
		t.Fatalf("%d DELETE statements for 2,500 rows, want at least 3", len(tr.rows))
	}
	for _, n := range tr.rows {
		if n > postgres.HousekeepingBatch {
			t.Errorf("one DELETE removed %d rows, over %d", n, postgres.HousekeepingBatch)
		}
	}
}

// deleteTracer records the rows each DELETE statement removed.
type deleteTracer struct {
	mu   sync.Mutex
	rows []int64
}

func (d *deleteTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (d *deleteTracer) TraceQueryEnd(_ context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if data.CommandTag.Delete() {
		d.mu.Lock()
		d.rows = append(d.rows, data.CommandTag.RowsAffected())
		d.mu.Unlock()
	}
}
