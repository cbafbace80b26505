package warehouse

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/services/warehouse/internal/warehousedb"
)

// errLockOrder is a handler failure that handling the record first in its
// transaction fixes: see lockStock. It wraps consumer.ErrBatchConflict, so
// the consumer commits the records before it and starts the next batch
// with it, without counting a failed attempt.
var errLockOrder = fmt.Errorf("stock row busy and behind a row this transaction holds: %w", consumer.ErrBatchConflict)

// pgLockNotAvailable is SQLSTATE lock_not_available, NOWAIT's error.
const pgLockNotAvailable = "55P03"

// lockStock locks the stock rows of skus (distinct, sorted in byte order)
// for this transaction, creating missing rows with defaultStock units.
//
// Deadlock freedom rests on one rule: a transaction waits for a stock row
// only while every stock row it holds sorts before it. Within one order
// that is the sorted lock. But the consumer handles several queued records
// of a partition in one transaction, so a later order's SKUs may sort
// before rows an earlier order in the same transaction locked; waiting for
// those could deadlock with another transaction doing the same in the
// opposite order. So the transaction remembers the greatest SKU it has
// locked (a transaction-local setting, which a rollback or savepoint
// rollback reverts together with the locks): SKUs above it are locked in
// order, waiting as needed; SKUs at or below it are taken with NOWAIT
// (instantly when this transaction holds them already), and when one is
// busy, or missing (creating it could wait on another transaction's
// insert), lockStock fails with errLockOrder. The consumer then commits
// the records before this one and starts a fresh transaction with this
// one, where every SKU is above the (empty) maximum.
func lockStock(ctx context.Context, q *warehousedb.Queries, skus []string, defaultStock int64) error {
	if len(skus) == 0 {
		return nil
	}
	held, err := q.LockedMaxSKU(ctx)
	if err != nil {
		return fmt.Errorf("read locked stock: %w", err)
	}
	// SKUs are at least one character, so "" sorts before them all.
	i, _ := slices.BinarySearch(skus, held)
	if i < len(skus) && skus[i] == held {
		i++
	}
	low, high := skus[:i], skus[i:]
	if len(low) > 0 {
		got, err := q.LockStockNowait(ctx, low)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == pgLockNotAvailable {
			return fmt.Errorf("lock stock %v: %w", low, errLockOrder)
		}
		if err != nil {
			return fmt.Errorf("lock stock: %w", err)
		}
		if len(got) < len(low) {
			return fmt.Errorf("lock stock %v: a row is missing: %w", low, errLockOrder)
		}
	}
	if len(high) > 0 {
		if err := q.LockStock(ctx, warehousedb.LockStockParams{Skus: high, DefaultAvailable: defaultStock}); err != nil {
			return fmt.Errorf("lock stock: %w", err)
		}
		if err := q.SetLockedMaxSKU(ctx, high[len(high)-1]); err != nil {
			return fmt.Errorf("remember locked stock: %w", err)
		}
	}
	return nil
}
