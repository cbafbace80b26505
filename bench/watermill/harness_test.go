package watermill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// serverURL is the PostgreSQL server the databases are made on, as in
// internal/pgtest (which another module cannot import).
func serverURL() string {
	if u := os.Getenv("POSTGRES_URL"); u != "" {
		return u
	}
	return postgres.DefaultURL
}

// newDatabase creates an empty database, dropped when tb ends, and returns
// its URL and name.
func newDatabase(tb testing.TB) (url, name string) {
	tb.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name = "orderflow_bench_wm_" + hex.EncodeToString(b)
	url, err := postgres.EnsureDatabase(context.Background(), serverURL(), name)
	if err != nil {
		tb.Fatalf("create database: %v (is PostgreSQL running? see README)", err)
	}
	tb.Cleanup(func() {
		if err := postgres.DropDatabase(context.Background(), serverURL(), name); err != nil {
			tb.Logf("drop %s: %v", name, err)
		}
	})
	return url, name
}

// openPool opens a pool of at most maxConns connections on url, closed when
// tb ends (before its database is dropped: cleanups run last-in first-out).
func openPool(tb testing.TB, url string, maxConns int32) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.MaxConns = maxConns
	postgres.RegisterTypes(cfg)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// startBroker returns the brokers of KAFKA_BROKERS, or of an embedded
// broker running until tb ends.
func startBroker(tb testing.TB) []string {
	tb.Helper()
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		return kafka.ParseBrokers(env)
	}
	e, err := kafka.StartEmbedded("127.0.0.1:0", "")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Close)
	return e.Addrs()
}

// arrivals is a franz-go consumer of one topic that notes when each key
// first arrived.
type arrivals struct {
	cl   *kgo.Client
	stop context.CancelFunc
	done chan struct{}

	mu    sync.Mutex
	first map[string]time.Time
	last  time.Time // when the newest key arrived
	grew  chan struct{}
}

// consume starts consuming topic from its start (atStart) or its end.
func consume(tb testing.TB, brokers []string, topic string, atStart bool) *arrivals {
	tb.Helper()
	offset := kgo.NewOffset().AtEnd()
	if atStart {
		offset = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(offset), kgo.FetchMaxWait(10*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	a := &arrivals{cl: cl, stop: stop, done: make(chan struct{}), first: map[string]time.Time{}, grew: make(chan struct{}, 1)}
	go func() {
		defer close(a.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			a.mu.Lock()
			n := len(a.first)
			fs.EachRecord(func(r *kgo.Record) {
				if _, dup := a.first[string(r.Key)]; !dup {
					a.first[string(r.Key)] = now
				}
			})
			if len(a.first) > n {
				a.last = now
				select {
				case a.grew <- struct{}{}:
				default:
				}
			}
			a.mu.Unlock()
		}
	}()
	tb.Cleanup(a.close)
	return a
}

func (a *arrivals) close() {
	a.stop()
	<-a.done
	a.cl.Close()
}

// waitFor waits until every key of want has arrived or the deadline
// passes, and returns how many have.
func (a *arrivals) waitFor(want map[string]time.Time, deadline time.Time) int {
	for {
		a.mu.Lock()
		n := 0
		for k := range want {
			if _, ok := a.first[k]; ok {
				n++
			}
		}
		a.mu.Unlock()
		if n == len(want) || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCount waits until n distinct keys have arrived or the deadline
// passes; it returns how many did and when the last of them arrived.
func (a *arrivals) waitCount(n int, deadline time.Time) (int, time.Time) {
	for {
		a.mu.Lock()
		got, last := len(a.first), a.last
		a.mu.Unlock()
		if got >= n {
			return got, last
		}
		left := time.Until(deadline)
		if left <= 0 {
			return got, last
		}
		select {
		case <-a.grew:
		case <-time.After(min(left, 100*time.Millisecond)):
		}
	}
}

// latencies joins commit and arrival times; keys never consumed are
// counted, not timed.
func (a *arrivals) latencies(committed map[string]time.Time) (lat []time.Duration, lost int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, c := range committed {
		at, ok := a.first[k]
		if !ok {
			lost++
			continue
		}
		lat = append(lat, at.Sub(c))
	}
	slices.Sort(lat)
	return lat, lost
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*q))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// horizonWatch samples, every 10 ms while a phase runs, the oldest
// transaction that holds a transaction id in another database of the
// server. Watermill's forwarder publishes only rows older than every
// running transaction of the server (pg_snapshot_xmin), so such a
// transaction holds it back: on a server shared with other tests it, not
// the forwarder, sets the tail latency. Orderflow's relay counts only its
// own database's transactions (outbox_horizon).
type horizonWatch struct {
	stop context.CancelFunc
	done chan struct{}

	oldest  time.Duration // the oldest seen
	samples int
	held    int // samples with one open longer than heldOver
}

const heldOver = 10 * time.Millisecond

// watchHorizon starts sampling; the database of the phase (own) is not
// counted.
func watchHorizon(tb testing.TB, own string) *horizonWatch {
	tb.Helper()
	ctx, stop := context.WithCancel(context.Background())
	conn, err := pgx.Connect(ctx, serverURL())
	if err != nil {
		tb.Fatal(err)
	}
	w := &horizonWatch{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer conn.Close(context.Background())
		for ctx.Err() == nil {
			var secs float64
			err := conn.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM max(now() - xact_start)), 0)
				FROM pg_stat_activity
				WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND datname IS DISTINCT FROM $1`, own).Scan(&secs)
			if err == nil {
				age := time.Duration(secs * float64(time.Second))
				w.oldest = max(w.oldest, age)
				w.samples++
				if age > heldOver {
					w.held++
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return w
}

// end stops sampling; the figures may be read after it.
func (w *horizonWatch) end() {
	w.stop()
	<-w.done
}

func (w *horizonWatch) String() string {
	if w.samples == 0 {
		return "foreign transactions: not sampled"
	}
	return fmt.Sprintf("foreign transactions: oldest %.0f ms, one over %v in %.0f%% of samples",
		ms(w.oldest), heldOver, 100*float64(w.held)/float64(w.samples))
}
