package warehouse

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/services/warehouse/internal/warehousedb"
)

// TestLockStockNoDeadlock runs lockStock the way the consumer's batches
// use it, straight on the database: concurrent transactions each handling
// several orders in a row, so an order's SKUs often sort before rows an
// earlier order of the same transaction locked. Handled as the consumer
// does (on errLockOrder the orders before commit, the failing one goes
// alone), every order commits exactly once, none alone ever fails, and no
// transaction deadlocks (PostgreSQL would abort one with 40P01, failing
// the test).
func TestLockStockNoDeadlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	skus := []string{"A", "B", "C", "D", "E", "F"}
	const initial = 1_000_000
	for _, sku := range skus[:3] { // D, E and F are created by the orders
		if err := warehousedb.New(pool).SetStock(ctx, warehousedb.SetStockParams{Sku: sku, Available: initial}); err != nil {
			t.Fatal(err)
		}
	}

	// runTx handles orders in one transaction; on failure it reports the
	// index of the failing order.
	runTx := func(orders [][]string) (int, error) {
		failedAt := -1
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			q := warehousedb.New(tx)
			for i, o := range orders {
				if err := lockStock(ctx, q, o, initial); err != nil {
					failedAt = i
					return err
				}
				deltas := make([]int64, len(o))
				for j := range deltas {
					deltas[j] = -1
				}
				if err := q.AddStock(ctx, warehousedb.AddStockParams{Skus: o, Deltas: deltas}); err != nil {
					return err
				}
				// Hold the locks a moment, so transactions overlap.
				if _, err := tx.Exec(ctx, "SELECT pg_sleep(0.001)"); err != nil {
					return err
				}
			}
			return nil
		})
		return failedAt, err
	}

	var mu sync.Mutex
	taken := map[string]int64{}
	var retried atomic.Int64
	var handle func(orders [][]string) error
	handle = func(orders [][]string) error {
		if len(orders) == 0 {
			return nil
		}
		i, err := runTx(orders)
		if err == nil {
			mu.Lock()
			for _, o := range orders {
				for _, sku := range o {
					taken[sku]++
				}
			}
			mu.Unlock()
			return nil
		}
		if !errors.Is(err, errLockOrder) {
			return err
		}
		if i == 0 {
			return fmt.Errorf("first order of a transaction: %w", err)
		}
		retried.Add(1)
		if err := handle(orders[:i]); err != nil {
			return err
		}
		if err := handle(orders[i : i+1]); err != nil {
			return err
		}
		return handle(orders[i+1:])
	}

	const workers, rounds, perTx = 6, 30, 4 // workers within pgtest's pool of 8
	var g errgroup.Group
	for w := range workers {
		rng := rand.New(rand.NewPCG(uint64(w), 42))
		g.Go(func() error {
			for range rounds {
				orders := make([][]string, perTx)
				for i := range orders {
					o := slices.Clone(skus)
					rng.Shuffle(len(o), func(a, b int) { o[a], o[b] = o[b], o[a] })
					o = o[:1+rng.IntN(3)]
					slices.Sort(o)
					orders[i] = o
				}
				if err := handle(orders); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d batches split on errLockOrder", retried.Load())

	levels, err := warehousedb.New(pool).GetStockLevels(ctx, skus)
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
