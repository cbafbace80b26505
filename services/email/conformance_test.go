package email

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/smtptest"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/service"
)

func TestConformance(t *testing.T) {
	srv := smtptest.Start(t)
	topo := amqptest.Topology(t, 50*time.Millisecond, 100*time.Millisecond, 200*time.Millisecond)
	servicetest.RunConformance(t, servicetest.Conformance{
		Name: serviceName,
		Run: func(ctx context.Context, cfg service.Config) error {
			return Run(ctx, Config{
				Config: cfg, SMTPAddr: srv.Addr, RetryDelays: topo.RetryDelays,
				QueuePrefix: strings.TrimSuffix(topo.Exchange, "email"), MaxAttempts: 4,
			}, slog.New(slog.DiscardHandler))
		},
		Input: func(id string) []contract.Event {
			return []contract.Event{placed(id, "ada@example.com"), captured(id, "ada@example.com")}
		},
		Effects: func(ctx context.Context, pool *pgxpool.Pool, id string) (int, error) {
			var n int
			err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM emails WHERE order_id = $1) +
				(SELECT count(*) FROM outbox WHERE key = $1::text)`, id).Scan(&n)
			return n, err
		},
	})
}
