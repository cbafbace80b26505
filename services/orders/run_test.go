package orders

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
)

// TestRun runs the whole service: database creation and migrations, the
// API, and the relay publishing the OrderPlaced record to Kafka; then a
// clean shutdown.
func TestRun(t *testing.T) {
	t.Parallel()
	broker := kafkatest.Start(t)
	owner := pgtest.NewOwner(t)
	cfg := Config{Config: service.Config{
		HTTPAddr:    testenv.FreeAddr(t),
		PostgresURL: pgtest.ServerURL(),
		Database:    owner.Database,
		Role:        owner.Role,
		MaxConns:    4,
		Brokers:     broker.Addrs,
		Kafka:       broker.Service,
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(t.Output(), nil))) }()
	stopped := false
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			stopped = true
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return 10s after its context was cancelled")
			return nil
		}
	}
	t.Cleanup(func() {
		if !stopped {
			_ = stop()
		}
	})
	base := "http://" + cfg.HTTPAddr

	testenv.WaitFor(t, 30*time.Second, "readyz 200", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	resp := do(t, http.MethodPost, base+"/orders", validBody, map[string]string{"X-Correlation-ID": "run-test"})
	if resp.status != http.StatusCreated {
		t.Fatalf("POST: %d %s", resp.status, resp.body)
	}
	o := decode[orderResponse](t, resp.body)

	cl, err := kgo.NewClient(broker.Opts(kgo.ConsumeTopics(contract.TopicOrders),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rec *kgo.Record
	fetchCtx, cancelFetch := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelFetch()
	for rec == nil {
		fetches := cl.PollFetches(fetchCtx)
		if fetchCtx.Err() != nil {
			t.Fatal("no OrderPlaced record for the order within 30s")
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == o.ID.String() {
				rec = r
			}
		})
	}
	headers := map[string]string{}
	for _, h := range rec.Headers {
		headers[h.Key] = string(h.Value)
	}
	var ev contract.OrderPlaced
	if err := json.Unmarshal(rec.Value, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Event != "OrderPlaced" || ev.OrderID != o.ID.String() || ev.TotalCents != 2500 || ev.PaymentToken != "tok_visa" ||
		headers["ce_type"] != "OrderPlaced" || headers["ce_id"] != ev.EventID || headers["ce_source"] != "orderflow/orders" ||
		headers["x-correlation-id"] != "run-test" {
		t.Errorf("record %s with headers %v", rec.Value, headers)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after Run returned")
	}
}

// With no broker at all, the service still starts, takes orders (201) and
// keeps their events in the outbox; /readyz says why it is not ready.
func TestRunWithBrokerDown(t *testing.T) {
	t.Parallel()
	owner := pgtest.NewOwner(t)
	cfg := Config{Config: service.Config{
		HTTPAddr:    testenv.FreeAddr(t),
		PostgresURL: pgtest.ServerURL(),
		Database:    owner.Database,
		Role:        owner.Role,
		MaxConns:    4,
		Brokers:     []string{testenv.FreeAddr(t)}, // nothing listens there
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(t.Output(), nil))) }()
	base := "http://" + cfg.HTTPAddr
	var resp response
	testenv.WaitFor(t, 30*time.Second, "POST /orders answered", func() bool {
		if _, err := http.Get(base + "/healthz"); err != nil {
			return false
		}
		resp = do(t, http.MethodPost, base+"/orders", validBody, nil)
		return true
	})
	if resp.status != http.StatusCreated {
		t.Fatalf("POST with the broker down: %d %s", resp.status, resp.body)
	}
	ready, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	ready.Body.Close()
	if ready.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the broker down = %d, want 503", ready.StatusCode)
	}
	cancel()
	testenv.Stopped(t, done, 10*time.Second) // with the broker down, too
	pool := mustPool(t, pgtest.ServerURL(), cfg.Database)
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM outbox").Scan(&n); err != nil || n != 1 {
		t.Fatalf("outbox holds %d rows (%v), want the order's event waiting", n, err)
	}
}

func mustPool(t *testing.T, serverURL, database string) *pgxpool.Pool {
	t.Helper()
	dbURL, err := postgres.DatabaseURL(serverURL, database)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.Connect(context.Background(), dbURL, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
