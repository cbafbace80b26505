package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/devstack"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/service"
)

// choreography is a running `make run` stack under benchmark.
type choreography struct {
	urls    map[string]string        // service → base URL
	pools   map[string]*pgxpool.Pool // service → its database
	brokers []string
}

// startChoreography runs the whole stack as `make run` does, each service
// on a fresh database, with delays short enough that every step of an
// order (ship after 1 s, award after 2 s) happens during the benchmark.
func startChoreography(b *testing.B) *choreography {
	b.Helper()
	for k, v := range map[string]string{
		"WAREHOUSE_SHIP_DELAY": "1s", "LOYALTY_AWARD_DELAY": "2s", "WAREHOUSE_DEFAULT_STOCK": "100000000",
		"LOG_LEVEL": "warn", "KAFKA_BROKERS": "",
	} {
		b.Setenv(k, v)
	}
	c := &choreography{urls: map[string]string{}, pools: map[string]*pgxpool.Pool{}}
	databases, addrs := map[string]string{}, map[string]string{}
	for _, name := range devstack.Services() {
		dbURL := pgtest.NewDatabase(b)
		u, err := url.Parse(dbURL)
		if err != nil {
			b.Fatal(err)
		}
		databases[name], addrs[name] = strings.TrimPrefix(u.Path, "/"), testenv.FreeAddr(b)
		c.urls[name] = "http://" + addrs[name]
		pool, err := pgxpool.New(context.Background(), dbURL)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		c.pools[name] = pool
	}
	var banner testenv.SyncBuffer
	dataDir := b.TempDir() // before Start: removed after the stack stopped
	running := testenv.Start(b, func(ctx context.Context) error {
		return devstack.Run(ctx, &banner, devstack.Options{
			KafkaAddr:   "127.0.0.1:0",
			QueuePrefix: amqptest.Prefix(b),
			DataDir:     dataDir,
			Logs:        io.Discard,
			Configure: func(name string, cfg *service.Config) {
				cfg.HTTPAddr, cfg.Database = addrs[name], databases[name]
			},
		})
	})
	b.Cleanup(running.Stop)
	for _, base := range c.urls {
		servicetest.WaitReady(b, base)
	}
	m := kafkaAddr.FindStringSubmatch(banner.String())
	if m == nil {
		b.Fatalf("the banner names no broker:\n%s", banner.String())
	}
	c.brokers = []string{m[1]}
	return c
}

// skus is how many SKUs the benchmark's orders pick from (one each,
// uniformly): few enough that every stock row is hot and warehouse's
// batches on different partitions wait for each other's SKU locks.
// BENCH_SKUS overrides it, to see what the contention costs.
var skus = func() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_SKUS")); err == nil && n > 0 {
		return n
	}
	return 100
}()

// load posts orders at rate per second for d (open loop: a request is due
// every 1/rate whether or not earlier ones have answered) and returns each
// order's id with the time its 201 arrived, and the rate achieved.
func (c *choreography) load(b *testing.B, rate int, d time.Duration) (map[string]time.Time, float64) {
	b.Helper()
	const workers = 64
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	due := make(chan struct{}, rate) // at most a second of requests waiting
	var mu sync.Mutex
	placed := map[string]time.Time{}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range due {
				body := fmt.Sprintf(`{"customerId":"c-%d","email":"ada@example.com","items":[{"sku":"sku-%d","quantity":1,"unitPriceCents":%d}],"currency":"EUR","paymentToken":"tok_visa"}`,
					rand.N(1000), rand.N(skus), 100+rand.N(10000))
				resp, err := client.Post(c.urls["orders"]+"/orders", "application/json", strings.NewReader(body))
				if err != nil {
					b.Error(err)
					continue
				}
				var o struct {
					ID string `json:"id"`
				}
				err = json.NewDecoder(resp.Body).Decode(&o)
				resp.Body.Close()
				at := time.Now()
				if resp.StatusCode != http.StatusCreated || err != nil {
					b.Errorf("POST /orders: %s %v", resp.Status, err)
					continue
				}
				mu.Lock()
				placed[o.ID] = at
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	next := start
	dropped := 0
	for next.Before(start.Add(d)) {
		time.Sleep(time.Until(next))
		select {
		case due <- struct{}{}:
		default:
			dropped++ // more than a second behind: the service is saturated
		}
		next = next.Add(interval)
	}
	close(due)
	wg.Wait()
	if dropped > 0 {
		b.Logf("%d/s: %d requests not sent, the API was over a second behind", rate, dropped)
	}
	return placed, float64(len(placed)) / time.Since(start).Seconds()
}

// captureLatencies waits until orders has recorded PaymentCaptured for
// every placed order and returns each one's latency from the 201, sorted.
func (c *choreography) captureLatencies(b *testing.B, placed map[string]time.Time) []time.Duration {
	b.Helper()
	ids := make([]string, 0, len(placed))
	for id := range placed {
		ids = append(ids, id)
	}
	var lat []time.Duration
	testenv.WaitFor(b, 120*time.Second, "every PaymentCaptured at orders", func() bool {
		rows, err := c.pools["orders"].Query(context.Background(), `SELECT order_id::text, recorded_at FROM order_timeline
			WHERE event = 'PaymentCaptured' AND order_id = ANY($1::uuid[])`, ids)
		if err != nil {
			b.Fatal(err)
		}
		defer rows.Close()
		lat = lat[:0]
		for rows.Next() {
			var id string
			var at time.Time
			if err := rows.Scan(&id, &at); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, at.Sub(placed[id]))
		}
		return rows.Err() == nil && len(lat) == len(ids)
	})
	slices.Sort(lat)
	return lat
}

// backlog is how many records and outbox rows wait anywhere in the system:
// every consumer group's lag plus every service's unpublished outbox rows.
func (c *choreography) backlog(b *testing.B) int64 {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var groups []string
	for _, name := range devstack.Services() {
		groups = append(groups, "orderflow-"+name)
	}
	lags, err := kadm.NewClient(cl).Lag(context.Background(), groups...)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	var parts []string
	for name, g := range lags {
		total += g.Lag.Total()
		parts = append(parts, fmt.Sprintf("%s lag %d", name, g.Lag.Total()))
	}
	for name, pool := range c.pools {
		var pending int64
		if err := pool.QueryRow(context.Background(),
			"SELECT count(*) FROM outbox o, outbox_cursor c WHERE (o.txid, o.id) > (c.txid, c.id)").Scan(&pending); err != nil {
			b.Fatal(err)
		}
		total += pending
		parts = append(parts, fmt.Sprintf("%s outbox %d", name, pending))
	}
	slices.Sort(parts)
	b.Logf("backlog: %s", strings.Join(parts, ", "))
	return total
}

// BenchmarkChoreography: the whole system of `make run` (every service,
// its relay, consumers and timers, the embedded broker) under open-loop
// POST /orders load.
//   - latency: POST 201 → PaymentCaptured recorded by orders, p50 and p99,
//     at 300 orders/s for 10 s. Target p99 ≤ 100 ms.
//   - sustained: rising rates (from 100/s) for 10 s each; a rate is sustained when the
//     API kept up (≥ 95% of it placed) and, when the load stopped, less
//     than one second's worth of records waited anywhere (every consumer
//     group's lag plus every outbox's backlog), so no lag kept growing.
//     Target ≥ 1,000 orders/s.
func BenchmarkChoreography(b *testing.B) {
	for range b.N {
		c := startChoreography(b)

		placed, _ := c.load(b, 300, 10*time.Second)
		c.backlog(b)
		lat := c.captureLatencies(b, placed)
		b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
		b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
		b.Logf("300/s: %d orders, capture latency p50 %v p99 %v max %v", len(lat), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])

		sustained := 0.0
		for _, rate := range []int{100, 200, 300, 400, 600, 800, 1000, 1200, 1500} {
			time.Sleep(3 * time.Second) // let the previous step's timers fire
			_, achieved := c.load(b, rate, 10*time.Second)
			left := c.backlog(b)
			b.Logf("%d/s: placed %.0f/s, backlog when the load stopped: %d", rate, achieved, left)
			if achieved < 0.95*float64(rate) || left > int64(rate) {
				break
			}
			sustained = achieved
		}
		b.ReportMetric(sustained, "sustained-orders/s")
	}
}

// kafkaAddr finds the broker's address in the banner.
var kafkaAddr = regexp.MustCompile(`kafka +\[([0-9.:]+)\]`)
