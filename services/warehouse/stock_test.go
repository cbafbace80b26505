package warehouse

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/services/warehouse/internal/warehousedb"
)

// TestLockStockNoDeadlock runs lockStock the way the consumer's batches
// use it, straight on the database: concurrent transactions each lock the
// SKUs of several orders at once (given in any order, some of them not
// created yet), take a unit of each and hold the locks a moment. Every
// transaction commits (PostgreSQL would abort one of a deadlock with
// 40P01, failing the test), the units read under the lock are the units
// left by the transactions before, and the missing rows are created once
// with the default.
func TestLockStockNoDeadlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	skus := []string{"A", "B", "C", "D", "E", "F"}
	const initial = 1_000_000
	for _, sku := range skus[:3] { // D, E and F are created by the transactions
		if err := warehousedb.New(pool).SetStock(ctx, warehousedb.SetStockParams{Sku: sku, Available: initial}); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	taken := map[string]int64{}
	runTx := func(want []string) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			q := warehousedb.New(tx)
			levels, err := lockStock(ctx, q, slices.Clone(want), initial)
			if err != nil {
				return err
			}
			mu.Lock()
			for _, sku := range want {
				if got := levels[sku]; got != initial-taken[sku] {
					t.Errorf("%s locked with %d available, want %d", sku, got, initial-taken[sku])
				}
				taken[sku]++
			}
			mu.Unlock()
			deltas := make([]int64, len(want))
			for i := range deltas {
				deltas[i] = -1
			}
			if err := q.AddStock(ctx, warehousedb.AddStockParams{Skus: want, Deltas: deltas}); err != nil {
				return err
			}
			// Hold the locks a moment, so transactions overlap.
			_, err = tx.Exec(ctx, "SELECT pg_sleep(0.001)")
			return err
		})
	}

	const workers, rounds = 6, 60 // workers within pgtest's pool of 8
	var g errgroup.Group
	for w := range workers {
		rng := rand.New(rand.NewPCG(uint64(w), 42))
		g.Go(func() error {
			for range rounds {
				want := slices.Clone(skus)
				rng.Shuffle(len(want), func(a, b int) { want[a], want[b] = want[b], want[a] })
				if err := runTx(want[:1+rng.IntN(len(want))]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	rows, err := pool.Query(ctx, "SELECT sku, available FROM stock")
	if err != nil {
		t.Fatal(err)
	}
	levels, err := pgx.CollectRows(rows, pgx.RowToStructByPos[warehousedb.LockStockRow])
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range levels {
		if want := initial - taken[l.Sku]; l.Available != want {
			t.Errorf("%s: available %d, want %d", l.Sku, l.Available, want)
		}
	}
	if len(levels) != len(skus) {
		t.Errorf("%d stock rows, want %d", len(levels), len(skus))
	}
}
