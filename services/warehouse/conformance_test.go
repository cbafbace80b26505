package warehouse

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/service"
)

func TestConformance(t *testing.T) {
	servicetest.RunConformance(t, servicetest.Conformance{
		Name: serviceName,
		Run: func(ctx context.Context, cfg service.Config) error {
			return Run(ctx, Config{Config: cfg, DefaultStock: 1_000_000, ShipDelay: time.Hour}, slog.New(slog.DiscardHandler))
		},
		Input: func(id string) []contract.Event {
			return []contract.Event{captured(id, contract.Item{SKU: "sku-conformance", Quantity: 1, UnitPriceCents: 100})}
		},
		Effects: servicetest.OutboxAndTimers,
	})
}
