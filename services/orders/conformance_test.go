package orders

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/service"
)

// Orders acts only on orders it stores, so each input's order is placed
// first, as POST /orders places it; its StockUnavailable then cancels the
// order: a timeline entry and an OrderCancelled in the outbox.
func TestConformance(t *testing.T) {
	servicetest.RunConformance(t, servicetest.Conformance{
		Name: serviceName,
		Run: func(ctx context.Context, cfg service.Config) error {
			return Run(ctx, Config{Config: cfg}, slog.New(slog.DiscardHandler))
		},
		Prepare: placeForConformance,
		Input: func(id string) []contract.Event {
			return []contract.Event{stockUnavailable(uuid.MustParse(id))}
		},
		Effects: func(ctx context.Context, pool *pgxpool.Pool, id string) (int, error) {
			var n int
			err := pool.QueryRow(ctx, `SELECT
				(SELECT count(*) FROM order_timeline WHERE order_id = $1 AND event <> 'OrderPlaced') +
				(SELECT count(*) FROM outbox WHERE key = $2 AND event_type <> 'OrderPlaced')`,
				uuid.MustParse(id), id).Scan(&n)
			return n, err
		},
	})
}

// placeForConformance places the order id as POST /orders does.
func placeForConformance(ctx context.Context, pool *pgxpool.Pool, id string) error {
	req := orderRequest{CustomerID: "c-conformance", Email: "ada@example.com", Currency: "EUR", PaymentToken: "tok_visa",
		Items: []orderItem{{SKU: "book-1", Quantity: 1, UnitPriceCents: 1250}}}
	items, err := json.Marshal(req.Items)
	if err != nil {
		return err
	}
	store := NewStore(pool, outbox.New(pool, outbox.Config{Service: serviceName}, slog.New(slog.DiscardHandler)))
	_, err = store.placeOrder(ctx, req, uuid.MustParse(id), items)
	return err
}
