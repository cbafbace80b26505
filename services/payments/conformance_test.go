package payments

import (
	"context"
	"log/slog"
	"testing"

	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/service"
)

func TestConformance(t *testing.T) {
	servicetest.RunConformance(t, servicetest.Conformance{
		Name: serviceName,
		Run: func(ctx context.Context, cfg service.Config) error {
			return Run(ctx, Config{Config: cfg}, slog.New(slog.DiscardHandler))
		},
		Input:   func(id string) []contract.Event { return []contract.Event{placed(id, "tok_visa", 1000)} },
		Effects: servicetest.OutboxAndTimers,
	})
}
