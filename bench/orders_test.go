package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/services/orders"
)

const (
	clients  = 32
	duration = 5 * time.Second
)

var orderBody = []byte(`{"customerId":"c-42","email":"ada@example.com","items":[{"sku":"book-1","quantity":2,"unitPriceCents":1250}],"currency":"EUR","paymentToken":"tok_visa"}`)

// pgbenchScript is the order transaction POST /orders runs (order row,
// timeline row, outbox row), with time-ordered ids like the service's
// UUIDv7 (now() is fixed within a transaction, so the rows share one).
const pgbenchScript = `\set r random(1, 4000000000000000)
BEGIN;
INSERT INTO orders (id, customer_id, email, items, total_cents, currency, payment_token, correlation_id) VALUES ((lpad(to_hex((extract(epoch from now())*1000000)::bigint), 16, '0') || lpad(to_hex(:r), 16, '0'))::uuid, 'c-42', 'ada@example.com', '[{"sku":"book-1","quantity":2,"unitPriceCents":1250}]', 2500, 'EUR', 'tok_visa', 'bench');
INSERT INTO order_timeline (order_id, event, event_id, service, occurred_at) VALUES ((lpad(to_hex((extract(epoch from now())*1000000)::bigint), 16, '0') || lpad(to_hex(:r), 16, '0'))::uuid, 'OrderPlaced', (lpad(to_hex((extract(epoch from now())*1000000)::bigint), 16, '0') || lpad(to_hex(:r + 1), 16, '0'))::uuid, 'orders', now());
INSERT INTO outbox (event_id, topic, key, event_type, payload, correlation_id, occurred_at) VALUES ((lpad(to_hex((extract(epoch from now())*1000000)::bigint), 16, '0') || lpad(to_hex(:r + 2), 16, '0'))::uuid, 'orders', 'k', 'OrderPlaced', '{"event":"OrderPlaced","version":1,"eventId":"01970000-0000-7000-8000-000000000000","orderId":"01970000-0000-7000-8000-000000000000","customerId":"c-42","email":"ada@example.com","items":[{"sku":"book-1","quantity":2,"unitPriceCents":1250}],"totalCents":2500,"currency":"EUR","paymentToken":"tok_visa","occurredAt":"2026-11-28T00:00:00Z"}', 'bench', now());
END;
`

// BenchmarkOrdersPost: POST /orders throughput and latency at 32 concurrent
// clients, beside pgbench running the same transaction at the same
// concurrency on the same server. Target: ratio >= 0.6.
func BenchmarkOrdersPost(b *testing.B) {
	for range b.N {
		dbURL := pgtest.NewDatabase(b)
		ctx := context.Background()
		pool, err := postgres.Connect(ctx, dbURL, clients)
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		if err := orders.Migrate(ctx, pool); err != nil {
			b.Fatal(err)
		}
		broker := kafkatest.Start(b)
		ob := outbox.New(pool, outbox.Config{Service: "orders", Brokers: broker.Addrs}, quiet)
		runRelay(b, ob)
		srv := httptest.NewServer(orders.NewServer(pool, ob, prometheus.NewRegistry(), quiet))
		defer srv.Close()

		tps, lat := loadOrders(b, srv.URL)
		b.ReportMetric(tps, "orders/s")
		b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
		b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")

		pgTPS, err := pgbench(b, dbURL)
		if err != nil {
			b.Logf("pgbench unavailable, no ratio: %v", err)
			continue
		}
		b.ReportMetric(pgTPS, "pgbench-tx/s")
		b.ReportMetric(tps/pgTPS, "ratio")
	}
}

func loadOrders(b *testing.B, base string) (float64, []time.Duration) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var mu sync.Mutex
	var all []time.Duration
	stop := time.Now().Add(duration)
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			for time.Now().Before(stop) {
				t0 := time.Now()
				resp, err := client.Post(base+"/orders", "application/json", bytes.NewReader(orderBody))
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Errorf("POST /orders: %s", resp.Status)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(all) == 0 {
		b.Fatal("no requests completed")
	}
	slices.Sort(all)
	return float64(len(all)) / elapsed.Seconds(), all
}

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

func pgbench(b *testing.B, dbURL string) (float64, error) {
	path, err := exec.LookPath("pgbench")
	if err != nil {
		return 0, err
	}
	script := filepath.Join(b.TempDir(), "order.sql")
	if err := os.WriteFile(script, []byte(pgbenchScript), 0o644); err != nil {
		return 0, err
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return 0, err
	}
	host := u.Hostname()
	if host == "localhost" {
		host = "127.0.0.1" // over TCP, as the service
	}
	args := []string{"-n", "-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(int(duration.Seconds())),
		"-f", script, "-h", host, "-p", u.Port(), "-U", u.User.Username(), u.Path[1:]}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench output has no tps line:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
