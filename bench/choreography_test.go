package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/devstack"
	"github.com/orderflow/orderflow/internal/loadgen"
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

// load posts happy orders at rate per second for d with orderflowctl
// load's generator (open loop: a request is due every 1/rate whether or not
// earlier ones have answered) and returns the accepted orders' ids and the
// rate achieved.
func (c *choreography) load(b *testing.B, rate int, d time.Duration) ([]string, float64) {
	b.Helper()
	var out bytes.Buffer
	sum, err := loadgen.Run(context.Background(), loadgen.Config{
		OrdersURL: c.urls["orders"], WarehouseURL: c.urls["warehouse"],
		Rate: float64(rate), Duration: d, Mix: loadgen.Mix{loadgen.Happy: 1}, SKUs: skus, Out: &out,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := sum.Err(); err != nil {
		b.Error(err)
	}
	if sum.Dropped > 0 {
		b.Logf("%d/s: %d requests not sent, the API was too far behind", rate, sum.Dropped)
	}
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if id, _, ok := strings.Cut(line, "\t"); ok {
			ids = append(ids, id)
		}
	}
	return ids, sum.AcceptedRate
}

// captureLatencies waits until orders has recorded PaymentCaptured for
// every placed order and returns each one's latency from the order's
// commit (both times by the database's clock), sorted.
func (c *choreography) captureLatencies(b *testing.B, ids []string) []time.Duration {
	b.Helper()
	var lat []time.Duration
	testenv.WaitFor(b, 120*time.Second, "every PaymentCaptured at orders", func() bool {
		rows, err := c.pools["orders"].Query(context.Background(), `
			SELECT extract(epoch FROM t.recorded_at - o.created_at)::float8 FROM order_timeline t JOIN orders o ON o.id = t.order_id
			WHERE t.event = 'PaymentCaptured' AND t.order_id = ANY($1::uuid[])`, ids)
		if err != nil {
			b.Fatal(err)
		}
		defer rows.Close()
		lat = lat[:0]
		for rows.Next() {
			var s float64
			if err := rows.Scan(&s); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Duration(s*float64(time.Second)))
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
//   - latency: the order's commit (just before its 201) → PaymentCaptured
//     recorded by orders, p50 and p99,
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
