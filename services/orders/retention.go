package orders

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/services/orders/internal/ordersdb"
)

// DefaultIdempotencyRetention is how long an Idempotency-Key is remembered:
// a client retrying later than this with the same key places a new order.
// A day covers any sane client retry policy (it is Stripe's window too).
const DefaultIdempotencyRetention = 24 * time.Hour

// pruneIdempotencyKeys deletes the keys older than retention, at start and
// then every retention/10 (at most an hour apart), until ctx is done. Every
// instance does it; concurrent deletes are harmless.
func pruneIdempotencyKeys(ctx context.Context, pool *pgxpool.Pool, retention time.Duration, log *slog.Logger) error {
	every := min(retention/10, time.Hour)
	q := ordersdb.New(pool)
	for {
		cutoff := time.Now().Add(-retention)
		n, err := postgres.DeleteInBatches(ctx, func(ctx context.Context, batch int32) (int64, error) {
			return q.PruneIdempotencyKeys(ctx, ordersdb.PruneIdempotencyKeysParams{Cutoff: cutoff, BatchSize: batch})
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Warn("idempotency key retention", "err", err)
		case n > 0:
			log.Info("idempotency key retention deleted old keys", "rows", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}
