package servicetest_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/service"
)

// The smallest service the suite can run, as a scaffold makes one: one
// typed handler (consumer.On) inserts a row per OrderPlaced and relies on
// the runner alone (inbox, offsets, dead letters) for each to count once;
// the orders topic's other events are passed over.
func TestConformanceOfAMinimalService(t *testing.T) {
	p := make([]byte, 3)
	_, _ = rand.Read(p)
	name := "minimal" + hex.EncodeToString(p)
	migrations := fstest.MapFS{"00001_effects.sql": {Data: []byte(`-- +goose Up
CREATE TABLE effects (order_id text NOT NULL, event text NOT NULL);
-- +goose Down
DROP TABLE effects;
`)}}
	servicetest.RunConformance(t, servicetest.Conformance{
		Name: name,
		Run: func(ctx context.Context, cfg service.Config) error {
			cfg.SetDefaults(name, cfg.HTTPAddr)
			return service.Run(ctx, cfg, service.Spec{
				Migrations: migrations,
				Topics:     []string{contract.TopicOrders},
				Setup: func(service.Deps) (service.Parts, error) {
					var d consumer.Dispatch
					consumer.On(&d, func(ctx context.Context, tx pgx.Tx, e *contract.OrderPlaced, _ consumer.Message) error {
						_, err := tx.Exec(ctx, "INSERT INTO effects VALUES ($1, $2)", e.OrderID, e.Name())
						return err
					})
					return service.Parts{Dispatch: &d}, nil
				},
			}, slog.New(slog.DiscardHandler))
		},
		Input: func(id string) []contract.Event {
			return []contract.Event{&contract.OrderPlaced{
				Envelope: contract.Envelope{OrderID: id}, CustomerID: "c-1", Email: "ada@example.com",
				Items:      []contract.Item{{SKU: "sku-1", Quantity: 1, UnitPriceCents: 100}},
				TotalCents: 100, Currency: "EUR", PaymentToken: "tok_visa",
			}}
		},
		Access: &kafka.Access{User: name, Group: consumer.GroupName(name),
			Consumes: []string{contract.TopicOrders}, Writes: []string{consumer.DLQTopic(name)}},
		Effects: func(ctx context.Context, pool *pgxpool.Pool, id string) (int, error) {
			var n int
			err := pool.QueryRow(ctx, "SELECT count(*) FROM effects WHERE order_id = $1", id).Scan(&n)
			return n, err
		},
	})
}
