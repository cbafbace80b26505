package payments

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
)

// Two instances of payments in one consumer group, one joining and the
// other leaving while 5,000 orders flow (each placed, then cancelled): every
// order is captured once and refunded once, in that order, on the topic and
// in the database.
func TestRebalanceWhileFlowing(t *testing.T) {
	if testing.Short() {
		t.Skip("5,000 orders")
	}
	t.Parallel()
	const orders = 5000
	broker := kafkatest.Start(t)
	shared := servicetest.Config(t, broker)
	log := slog.New(slog.DiscardHandler)
	run := func() *testenv.Running {
		cfg := Config{Config: shared}
		cfg.HTTPAddr = testenv.FreeAddr(t)
		r := testenv.Start(t, func(ctx context.Context) error { return Run(ctx, cfg, log) })
		servicetest.WaitReady(t, "http://"+cfg.HTTPAddr)
		return r
	}
	seen := servicetest.Collect(t, broker, contract.TopicPayments)
	producer := servicetest.NewProducer(t, broker)
	ids := make([]string, orders)
	produce := func(from, to int) {
		var evs []contract.Event
		for _, id := range ids[from:to] {
			evs = append(evs, placed(id, "tok_visa", 1000), cancelled(id, "customer_request"))
		}
		producer.ProduceAll(t, evs...)
	}
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}

	first := run()
	produce(0, orders/3)
	second := run() // joins: partitions move to it
	produce(orders/3, 2*orders/3)
	first.Halt(t) // leaves: its partitions move back
	produce(2*orders/3, orders)

	pool := servicetest.Pool(t, shared)
	testenv.WaitFor(t, 120*time.Second, "every order refunded", func() bool {
		var n int
		err := pool.QueryRow(context.Background(), "SELECT count(*) FROM payments WHERE status = 'refunded'").Scan(&n)
		return err == nil && n == orders
	})
	testenv.WaitFor(t, 60*time.Second, "every refund on the topic", func() bool {
		for _, id := range ids {
			if n := seen.Names(id); len(n) < 2 {
				return false
			}
		}
		return true
	})
	want := []string{"PaymentCaptured", "PaymentRefunded"}
	bad := 0
	for _, id := range ids {
		if got := seen.Names(id); !slices.Equal(got, want) {
			if bad++; bad <= 5 {
				t.Errorf("order %s: %v, want %v", id, got, want)
			}
		}
	}
	var rows int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM outbox").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 2*orders {
		t.Errorf("%d outbox rows, want %d", rows, 2*orders)
	}
	second.Halt(t)
}
