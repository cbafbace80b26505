package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/retry"
)

// Flaky charges in hand at once on every partition, far more of them than
// the pool has connections: each is captured on its third attempt, none
// waiting on a connection another holds. (The count used to take a second
// connection inside the handler's transaction: with every connection held
// by a flaky handler, they waited on each other for ever.)
func TestFlakyChargesShareThePool(t *testing.T) {
	t.Parallel()
	broker := kafkatest.Start(t)
	cfg := Config{Config: servicetest.Config(t, broker)}
	cfg.MaxConns = 4
	testenv.Start(t, func(ctx context.Context) error { return Run(ctx, cfg, slog.New(slog.DiscardHandler)) })
	servicetest.WaitReady(t, "http://"+cfg.HTTPAddr)

	evs := make([]contract.Event, 3*kafka.Partitions) // random keys: most partitions get some
	for i := range evs {
		evs[i] = placed(uuid.Must(uuid.NewV7()).String(), tokenFlaky, 2500)
	}
	servicetest.NewProducer(t, broker).ProduceAll(t, evs...)
	pool := servicetest.Pool(t, cfg.Config)
	testenv.WaitFor(t, 60*time.Second, "every flaky order captured", func() bool {
		var n int
		err := pool.QueryRow(context.Background(), "SELECT count(*) FROM payments WHERE status = 'captured'").Scan(&n)
		return err == nil && n == len(evs)
	})
	var wrong int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM payments WHERE attempts <> 3").Scan(&wrong); err != nil {
		t.Fatal(err)
	}
	if wrong != 0 {
		t.Errorf("%d of %d flaky orders captured on another attempt than the third", wrong, len(evs))
	}
}

// The gateway fails an order's first two charges and then succeeds, also
// when charged again after a success (one rolled back); orders count apart;
// an order is forgotten once flakyForget passed since its last failure.
// The failure is the handler's own, so each spends a consumer attempt.
func TestFlakyGatewayCountsFailures(t *testing.T) {
	g := newFlakyGateway()
	now := time.Now()
	a, b := uuid.New(), uuid.New()
	var got []string
	for _, id := range []uuid.UUID{a, a, b, a, a, b, b} {
		n, err := g.charge(id, now)
		got = append(got, fmt.Sprintf("%d:%v", n, err == nil))
	}
	if want := "[1:false 2:false 1:false 3:true 3:true 2:false 3:true]"; fmt.Sprint(got) != want {
		t.Errorf("charges %v, want %s", got, want)
	}
	n, err := g.charge(a, now.Add(flakyForget+2*time.Minute))
	if n != 1 || !errors.Is(err, errGatewayUnavailable) {
		t.Errorf("charge after flakyForget = %d, %v; want a first failure", n, err)
	}
	if retry.Infrastructure(err) {
		t.Error("the gateway's failure passes for the infrastructure's: it would spend no attempt")
	}
}
