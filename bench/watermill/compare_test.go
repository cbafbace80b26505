// Package watermill compares Orderflow's outbox relay with its closest peer,
// Watermill's Forwarder (watermill-sql's PostgreSQL subscriber feeding
// watermill-kafka's publisher), on the same PostgreSQL server and the same
// Kafka broker, one after the other in one run (A B C A B C), so both meet
// the same machine load.
//
// It is a module of its own so the product does not depend on Watermill:
// `cd bench/watermill && go test -v -run '^$' -bench . -benchtime 1x -timeout 45m`
// (12 to 20 minutes on a 2-core machine; -v, or go test cuts the per-round
// lines after ten).
//
// PostgreSQL is POSTGRES_URL's server (default the local one). Both relays
// publish only rows older than every transaction running on the whole
// server, so on a server shared with other tests (each CREATE DATABASE
// holds a transaction id for its whole copy) those transactions, not the
// relays, set the tail: every phase logs the oldest one it saw, and
// foreign-xact-max-ms reports it. For figures of the relays themselves,
// point POSTGRES_URL at a server of their own.
// Each run gets a fresh database; the broker is an embedded one (franz-go's
// kfake) unless KAFKA_BROKERS is set. The figures are printed with
// b.ReportMetric and every round is logged, so ranges can be read off; no
// assertion is made about time.
//
// Knobs (environment): BENCH_ROUNDS (default 2), BENCH_STEADY_SECONDS (10,
// after 3 s of warm-up), BENCH_RATE (2000 events/s), BENCH_DRAIN_ROWS
// (200000), BENCH_ONLY (comma-separated contender names, for profiling
// one: orderflow, watermill-default, watermill-tuned).
package watermill

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/pkg/events/kafka"
)

// options are one run's sizes.
type options struct {
	rounds    int
	rate      int // events/s in the steady phase
	warm      time.Duration
	measure   time.Duration
	drainRows int
	only      []string
}

func optionsFromEnv(tb testing.TB) options {
	tb.Helper()
	num := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			tb.Fatalf("%s=%q: want a positive integer", name, v)
		}
		return n
	}
	o := options{
		rounds:    num("BENCH_ROUNDS", 2),
		rate:      num("BENCH_RATE", 2000),
		warm:      3 * time.Second,
		measure:   time.Duration(num("BENCH_STEADY_SECONDS", 10)) * time.Second,
		drainRows: num("BENCH_DRAIN_ROWS", 200_000),
	}
	if v := os.Getenv("BENCH_ONLY"); v != "" {
		o.only = strings.Split(v, ",")
	}
	return o
}

func (o options) contenders() []contender {
	if len(o.only) == 0 {
		return contenders
	}
	var cs []contender
	for _, c := range contenders {
		if slices.Contains(o.only, c.name) {
			cs = append(cs, c)
		}
	}
	return cs
}

// BenchmarkRelayVersusWatermill: Orderflow's relay against Watermill's
// Forwarder, at its defaults and tuned, alternating.
//   - steady: events at a steady rate, one per producing transaction, from
//     commit until a franz-go consumer holds the record; p50 and p99.
//   - drain: a backlog committed first, then the time until every record
//     was consumed; events/s.
//
// Targets (issue): Orderflow p99 <= 5 ms at 2,000 events/s and at most half
// of tuned Watermill's; drain >= 8x tuned Watermill's.
func BenchmarkRelayVersusWatermill(b *testing.B) {
	o := optionsFromEnv(b)
	brokers := startBroker(b)
	if err := kafka.EnsureTopics(context.Background(), brokers, kafka.Security{}, steadyTopics...); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		steadies := map[string][]steadyResult{}
		drains := map[string][]drainResult{}
		for round := 1; round <= o.rounds; round++ {
			for _, c := range o.contenders() {
				r := steady(b, brokers, c, o)
				b.Logf("round %d steady %-17s %s", round, c.name, r)
				steadies[c.name] = append(steadies[c.name], r)
			}
			for _, c := range o.contenders() {
				if prev := drains[c.name]; len(prev) > 0 && prev[0].elapsed > drainOnce {
					b.Logf("round %d drain  %-17s not repeated: it took %.0f s", round, c.name, prev[0].elapsed.Seconds())
					continue
				}
				r := drain(b, brokers, c, o.drainRows)
				b.Logf("round %d drain  %-17s %s", round, c.name, r)
				drains[c.name] = append(drains[c.name], r)
			}
		}
		report(b, steadies, drains)
	}
}

// TestBothRelayAtLowVolume is a smoke run: each contender relays a few
// hundred events and a small backlog, and every one reaches the consumer.
func TestBothRelayAtLowVolume(t *testing.T) {
	o := options{rate: 200, warm: 500 * time.Millisecond, measure: time.Second}
	brokers := startBroker(t)
	if err := kafka.EnsureTopics(context.Background(), brokers, kafka.Security{}, steadyTopics...); err != nil {
		t.Fatal(err)
	}
	for _, c := range contenders {
		s := steady(t, brokers, c, o)
		if s.lost > 0 || s.events < 150 {
			t.Errorf("%s steady: %s", c.name, s)
		}
		d := drain(t, brokers, c, 2000)
		if d.got != 2000 {
			t.Errorf("%s drain: %s", c.name, d)
		}
		t.Logf("%s: steady %s; drain %s", c.name, s, d)
	}
}

// scope is a testing.TB whose cleanups run when the phase ends (close),
// not when the whole benchmark does: a phase's pools and database must be
// gone before the next phase, or PostgreSQL's connections run out.
type scope struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
}

func newScope(tb testing.TB) *scope {
	s := &scope{TB: tb}
	tb.Cleanup(s.close) // after a Fatal
	return s
}

func (s *scope) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

func (s *scope) close() {
	s.mu.Lock()
	fs := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for _, f := range slices.Backward(fs) {
		f()
	}
}

// start runs r's relay until the scope closes.
func start(s *scope, r *relay) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.run(ctx) }()
	s.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			s.Errorf("relay: %v", err)
		}
	})
}

// steadyResult is one contender's steady phase.
type steadyResult struct {
	events        int     // measured events committed
	rate          float64 // achieved events/s over the measured window
	p50, p99, max time.Duration
	lost          int           // committed but not consumed within the wait
	foreign       *horizonWatch // other databases' transactions meanwhile
}

func (r steadyResult) String() string {
	return fmt.Sprintf("%d events at %.0f/s: p50 %.2f ms, p99 %.2f ms, max %.2f ms, not consumed %d; %s",
		r.events, r.rate, ms(r.p50), ms(r.p99), ms(r.max), r.lost, r.foreign)
}

// steady writes o.rate events/s for o.warm, then for o.measure, and times
// the measured ones from commit to consumer.
func steady(tb testing.TB, brokers []string, c contender, o options) steadyResult {
	s := newScope(tb)
	defer s.close()
	r := c.setup(s, brokers)
	arr := consume(s, brokers, r.topic, false) // the warm-up covers its start
	start(s, r)
	foreign := watchHorizon(s, r.database)
	committed, rate := produce(s, r, o)
	arr.waitFor(committed, time.Now().Add(60*time.Second))
	foreign.end()
	lat, lost := arr.latencies(committed)
	return steadyResult{
		events: len(committed), rate: rate, lost: lost, foreign: foreign,
		p50: quantile(lat, 0.50), p99: quantile(lat, 0.99), max: quantile(lat, 1),
	}
}

// produce commits one event per transaction from 16 writers at o.rate,
// paced against the clock (a late tick is made up, not dropped), and
// returns the commit times of the events after the warm-up and the rate
// achieved over them.
func produce(tb testing.TB, r *relay, o options) (map[string]time.Time, float64) {
	const writers = 16
	ctx := context.Background()
	interval := time.Second / time.Duration(o.rate)
	total, warmN := int((o.warm+o.measure)/interval), int(o.warm/interval)
	jobs := make(chan bool, total) // measured?
	var (
		mu        sync.Mutex
		committed = make(map[string]time.Time, total-warmN)
		last      time.Time
		wg        sync.WaitGroup
	)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for measured := range jobs {
				id := uuid.NewString()
				at, err := r.write(ctx, id)
				if err != nil {
					tb.Errorf("write: %v", err)
					continue
				}
				if measured {
					mu.Lock()
					committed[id] = at
					if at.After(last) {
						last = at
					}
					mu.Unlock()
				}
			}
		}()
	}
	begin := time.Now()
	for i := range total {
		if d := time.Until(begin.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		jobs <- i >= warmN
	}
	close(jobs)
	wg.Wait()
	return committed, float64(len(committed)) / last.Sub(begin.Add(o.warm)).Seconds()
}

// drainResult is one contender's drain.
type drainResult struct {
	rows, got int
	elapsed   time.Duration
	foreign   *horizonWatch // other databases' transactions meanwhile
}

func (r drainResult) rate() float64 { return float64(r.got) / r.elapsed.Seconds() }

func (r drainResult) String() string {
	return fmt.Sprintf("%d of %d rows consumed in %.2f s: %.0f events/s; %s",
		r.got, r.rows, r.elapsed.Seconds(), r.rate(), r.foreign)
}

// drainWait bounds one drain; a contender slower than rows/drainWait is
// reported with what it consumed by then. A drain that took longer than
// drainOnce is not repeated in later rounds: watermill-sql's select sorts
// every pending row, so at its default 100 rows a select a 200,000-row
// drain takes about ten minutes on a 2-core machine, and its spread matters
// less than the run's length.
const drainWait, drainOnce = 20 * time.Minute, 5 * time.Minute

// drain commits rows events to a topic of their own, then starts the relay
// and times until the consumer has every one.
func drain(tb testing.TB, brokers []string, c contender, rows int) drainResult {
	s := newScope(tb)
	defer s.close()
	ctx := context.Background()
	topic := "bench.drain." + c.name + "." + uuid.NewString()[:8]
	if err := kafka.EnsureTopics(ctx, brokers, kafka.Security{}, topic); err != nil {
		s.Fatal(err)
	}
	s.Cleanup(func() { deleteTopic(s, brokers, topic) })
	r := c.setup(s, brokers)
	if err := r.fill(ctx, rows, topic); err != nil {
		s.Fatalf("fill backlog: %v", err)
	}
	arr := consume(s, brokers, topic, true)
	foreign := watchHorizon(s, r.database)
	begin := time.Now()
	start(s, r)
	got, last := arr.waitCount(rows, begin.Add(drainWait))
	if got < rows {
		last = time.Now()
	}
	foreign.end()
	return drainResult{rows: rows, got: got, elapsed: last.Sub(begin), foreign: foreign}
}

// deleteTopic frees the broker of a drain's records.
func deleteTopic(tb testing.TB, brokers []string, topic string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		tb.Logf("delete topic %s: %v", topic, err)
		return
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).DeleteTopic(context.Background(), topic); err != nil {
		tb.Logf("delete topic %s: %v", topic, err)
	}
}

// report prints the medians over the rounds and the ratios of Orderflow's
// figures to Watermill's.
func report(b *testing.B, steadies map[string][]steadyResult, drains map[string][]drainResult) {
	p99 := map[string]float64{}
	rate := map[string]float64{}
	for name, rs := range steadies {
		p99[name] = median(rs, func(r steadyResult) float64 { return ms(r.p99) })
		b.ReportMetric(median(rs, func(r steadyResult) float64 { return ms(r.p50) }), name+"-p50-ms")
		b.ReportMetric(p99[name], name+"-p99-ms")
	}
	for name, rs := range drains {
		rate[name] = median(rs, drainResult.rate)
		b.ReportMetric(rate[name], name+"-drain-events/s")
	}
	var oldest time.Duration
	for _, rs := range steadies {
		for _, r := range rs {
			oldest = max(oldest, r.foreign.oldest)
		}
	}
	for _, rs := range drains {
		for _, r := range rs {
			oldest = max(oldest, r.foreign.oldest)
		}
	}
	b.ReportMetric(ms(oldest), "foreign-xact-max-ms")
	of, ok := p99["orderflow"]
	if !ok {
		return
	}
	for _, wm := range []string{"default", "tuned"} {
		if w, ok := p99["watermill-"+wm]; ok && w > 0 {
			b.ReportMetric(of/w, "p99-ratio-vs-"+wm)
		}
		if w, ok := rate["watermill-"+wm]; ok && w > 0 {
			b.ReportMetric(rate["orderflow"]/w, "drain-ratio-vs-"+wm)
		}
	}
}

// median is the median of f over rs (the mean of the middle two when even).
func median[R any](rs []R, f func(R) float64) float64 {
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}
