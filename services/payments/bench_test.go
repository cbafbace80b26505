package payments

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/service"
)

// BenchmarkConsumeBacklog measures the consumer handler's throughput: a
// backlog of events (12,000 orders placed, every fourth then cancelled:
// 15,000 events over the 12 partitions) is committed to the topics before
// the service starts, so the runner hands it batches of 100, and events/s
// is that count over the time from the first batch's transaction to the
// last one's (the payments' created_at and updated_at), startup excluded.
//
//	go test -run '^$' -bench ConsumeBacklog -benchtime 1x ./services/payments
func BenchmarkConsumeBacklog(b *testing.B) {
	const orders, cancelEvery = 12_000, 4
	for range b.N {
		b.StopTimer()
		broker := kafkatest.Start(b)
		cfg := Config{Config: servicetest.Config(b, broker)}
		cfg.MaxConns = service.DefaultMaxConns
		var evs []contract.Event
		for i := range orders {
			id := uuid.Must(uuid.NewV7()).String()
			evs = append(evs, placed(id, tokenVisa, 2500))
			if i%cancelEvery == 0 {
				evs = append(evs, cancelled(id, "customer_request"))
			}
		}
		servicetest.NewProducer(b, broker).ProduceAll(b, evs...)
		pool := servicetest.Pool(b, cfg.Config)

		b.StartTimer()
		run := testenv.Start(b, func(ctx context.Context) error { return Run(ctx, cfg, slog.New(slog.DiscardHandler)) })
		refunds := (orders + cancelEvery - 1) / cancelEvery
		testenv.WaitFor(b, 5*time.Minute, "every event applied", func() bool {
			var captured, refunded int
			err := pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'captured'),
				count(*) FILTER (WHERE status = 'refunded') FROM payments`).Scan(&captured, &refunded)
			return err == nil && captured == orders-refunds && refunded == refunds
		})
		b.StopTimer()
		var span float64
		if err := pool.QueryRow(context.Background(),
			"SELECT extract(epoch FROM max(updated_at) - min(created_at))::float8 FROM payments").Scan(&span); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(evs))/span, "events/s")
		run.Halt(b)
	}
}
