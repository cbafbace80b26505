package orders

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/events/contract"
)

// TestRun runs the whole service: database creation and migrations, the
// API, and the relay publishing the OrderPlaced record to Kafka; then a
// clean shutdown.
func TestRun(t *testing.T) {
	t.Parallel()
	broker := kafkatest.Start(t)
	u, err := url.Parse(pgtest.NewDatabase(t)) // created here, so it is dropped after
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		HTTPAddr:    freeAddr(t),
		PostgresURL: pgtest.ServerURL(),
		Database:    strings.TrimPrefix(u.Path, "/"),
		MaxConns:    4,
		Brokers:     broker.Addrs,
	}
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
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return 30s after its context was cancelled")
			return nil
		}
	}
	t.Cleanup(func() {
		if !stopped {
			_ = stop()
		}
	})
	base := "http://" + cfg.HTTPAddr

	waitFor(t, 30*time.Second, "readyz 200", func() bool {
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

	cl, err := kgo.NewClient(kgo.SeedBrokers(broker.Addrs...), kgo.ConsumeTopics(contract.TopicOrders),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
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

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
