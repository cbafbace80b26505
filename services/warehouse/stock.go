package warehouse

import (
	"context"
	"fmt"
	"slices"

	"github.com/orderflow/orderflow/services/warehouse/internal/warehousedb"
)

// lockStock locks the stock rows of skus for this transaction, creating
// missing rows with defaultStock units, and returns each SKU's available
// units under the lock. skus is sorted and deduplicated in place.
//
// No oversell rests on the lock: a reservation is decided against units
// read under it and written back before the commit releases it. Deadlock
// freedom rests on taking every stock row a transaction needs in one
// statement, in SKU (byte) order, and no stock row before or after it: a
// transaction waits for a row only while every row it holds sorts before
// it. So the consumer's handler calls it once per batch, with the SKUs of
// all the batch's orders; the ship timer touches no stock row, and
// PUT /inventory writes a single one.
func lockStock(ctx context.Context, q *warehousedb.Queries, skus []string, defaultStock int64) (map[string]int64, error) {
	if len(skus) == 0 {
		return map[string]int64{}, nil
	}
	slices.Sort(skus)
	rows, err := q.LockStock(ctx, warehousedb.LockStockParams{Skus: slices.Compact(skus), DefaultAvailable: defaultStock})
	if err != nil {
		return nil, fmt.Errorf("lock stock: %w", err)
	}
	available := make(map[string]int64, len(rows))
	for _, r := range rows {
		available[r.Sku] = r.Available
	}
	return available, nil
}
