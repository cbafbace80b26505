// Package bench holds the performance benchmarks behind `make bench`. They
// run against the local PostgreSQL and the embedded broker (or
// KAFKA_BROKERS), print their figures with b.ReportMetric, and assert
// nothing about time: machines differ, and these ones are shared.
package bench

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/outbox"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newOutbox(b *testing.B, batch int) (*pgxpool.Pool, *kafkatest.Broker, *outbox.Outbox) {
	b.Helper()
	pool := pgtest.NewPool(b)
	if err := outbox.Migrate(context.Background(), pool); err != nil {
		b.Fatal(err)
	}
	broker := kafkatest.Start(b)
	o := outbox.New(pool, outbox.Config{Service: "orders", Brokers: broker.Addrs, BatchSize: batch}, quiet)
	return pool, broker, o
}

func runRelay(b *testing.B, o *outbox.Outbox) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = o.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
}

func sampleEvent(orderID string) *contract.OrderPlaced {
	return &contract.OrderPlaced{
		Envelope:   contract.Envelope{OrderID: orderID},
		CustomerID: "c-42", Email: "ada@example.com",
		Items:      []contract.Item{{SKU: "book-1", Quantity: 2, UnitPriceCents: 1250}},
		TotalCents: 2500, Currency: "EUR", PaymentToken: "tok_visa",
	}
}

// BenchmarkRelayDrain: how fast the relay empties a 200,000-row backlog.
// Target on a 2-core machine: >= 80,000 events/s (README "Benchmarks").
func BenchmarkRelayDrain(b *testing.B) {
	const backlog = 200_000
	for range b.N {
		b.StopTimer()
		pool, _, o := newOutbox(b, 5000)
		ctx := context.Background()
		// One real event through the writer, then cloned in SQL: fast to
		// set up, and every row is a valid, distinct event.
		tmpl := sampleEvent(uuid.NewString())
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return o.Write(ctx, tx, tmpl) }); err != nil {
			b.Fatal(err)
		}
		_, err := pool.Exec(ctx, `
			INSERT INTO outbox (event_id, topic, key, event_type, payload, correlation_id, occurred_at)
			SELECT gen_random_uuid(), topic, gen_random_uuid()::text, event_type, payload, correlation_id, occurred_at
			FROM outbox, generate_series(2, $1)`, backlog)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(ctx, "VACUUM ANALYZE outbox"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		runRelay(b, o)
		for {
			// EXISTS, not count(*): the probe must not steal the relay's CPU.
			var pending bool
			err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM outbox o, outbox_cursor c WHERE (o.txid, o.id) > (c.txid, c.id))").Scan(&pending)
			if err != nil {
				b.Fatal(err)
			}
			if !pending {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		elapsed := time.Since(start)
		b.ReportMetric(backlog/elapsed.Seconds(), "events/s")
	}
}

// BenchmarkRelayLatency: from an order transaction's commit until a
// consumer holds the record (an upper bound of commit → broker ack), at a
// steady 2,000 orders/s for 5 s. Target: p99 <= 20 ms.
func BenchmarkRelayLatency(b *testing.B) {
	const rate, seconds, writers = 2000, 5, 16
	for range b.N {
		b.StopTimer()
		pool, broker, o := newOutbox(b, 5000)
		runRelay(b, o)
		ctx := context.Background()

		// Arrival and commit times are joined at the end: a record can
		// arrive before its writer has noted the commit time.
		var mu sync.Mutex
		committed := map[string]time.Time{}
		arrived := map[string]time.Time{}
		cl, err := kgo.NewClient(kgo.SeedBrokers(broker.Addrs...), kgo.ConsumeTopics(contract.TopicOrders),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(10*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		cctx, stop := context.WithCancel(ctx)
		consumed := make(chan struct{})
		go func() {
			defer close(consumed)
			for cctx.Err() == nil {
				fs := cl.PollFetches(cctx)
				now := time.Now()
				mu.Lock()
				fs.EachRecord(func(r *kgo.Record) {
					if _, dup := arrived[string(r.Key)]; !dup {
						arrived[string(r.Key)] = now
					}
				})
				mu.Unlock()
			}
		}()
		// Let the consumer join before the clock starts.
		time.Sleep(500 * time.Millisecond)

		b.StartTimer()
		total := rate * seconds
		tick := time.NewTicker(time.Second / rate)
		jobs := make(chan struct{}, total)
		var wg sync.WaitGroup
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range jobs {
					id := uuid.NewString()
					err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return o.Write(ctx, tx, sampleEvent(id)) })
					if err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					committed[id] = time.Now()
					mu.Unlock()
					o.Committed()
				}
			}()
		}
		for range total {
			<-tick.C
			jobs <- struct{}{}
		}
		close(jobs)
		tick.Stop()
		wg.Wait()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := len(arrived)
			mu.Unlock()
			if n >= total || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		b.StopTimer()
		stop()
		<-consumed
		var lat []time.Duration
		for k, c := range committed {
			a, ok := arrived[k]
			if !ok {
				b.Fatalf("order %s committed but never consumed", k)
			}
			lat = append(lat, a.Sub(c))
		}
		slices.Sort(lat)
		b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
		b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
		b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
