package orders

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/testenv"
)

// Idempotency keys older than the retention are pruned: a request reusing
// one places a new order, while a recent key still replays.
func TestIdempotencyKeysPruned(t *testing.T) {
	t.Parallel()
	b := setup(t)
	old, recent := map[string]string{"Idempotency-Key": "old"}, map[string]string{"Idempotency-Key": "recent"}
	for _, h := range []map[string]string{old, recent} {
		if resp := b.post(t, validBody, h); resp.status != http.StatusCreated {
			t.Fatalf("status %d; body %s", resp.status, resp.body)
		}
	}
	if _, err := b.pool.Exec(context.Background(),
		"UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'"); err != nil {
		t.Fatal(err)
	}
	testenv.Start(t, func(ctx context.Context) error {
		return pruneIdempotencyKeys(ctx, b.pool, DefaultIdempotencyRetention, slog.New(slog.NewTextHandler(t.Output(), nil)))
	})
	testenv.WaitFor(t, 20*time.Second, "the old key pruned", func() bool { return b.count(t, "idempotency_keys") == 1 })

	if resp := b.post(t, validBody, recent); resp.status != http.StatusCreated || resp.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("recent key: status %d, replayed %q; want a replay", resp.status, resp.header.Get("Idempotent-Replayed"))
	}
	if resp := b.post(t, validBody, old); resp.status != http.StatusCreated || resp.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("pruned key: status %d, replayed %q; want a new order", resp.status, resp.header.Get("Idempotent-Replayed"))
	}
	if n := b.count(t, "orders"); n != 3 {
		t.Errorf("%d orders, want 3", n)
	}
}
