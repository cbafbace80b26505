// Package benchrun is the outside half of make bench: it builds and
// starts the whole system as processes (cmd/orderflow, every service in
// one process as make run runs them, and cmd/broker), drives it with
// orderflowctl load's generator (internal/loadgen, open loop, happy
// orders), samples every service's /metrics once a second, reads where
// each order got to in the service databases, stops the stack, and writes
// one table (bench/results.md) with the figures of the in-process
// benchmarks (their go test -bench output) beside its own, each with its
// target, and a chart of throughput and lag over the run (SVG).
//
// The phases: 300 orders/s for 10 s, for POST 201 → PaymentCaptured
// (recorded by orders; the figure BenchmarkChoreography reports in
// process); the system left to drain; then 1,000 orders/s for 20 s, the
// load stopped, and 20 s given to complete every order (shipped, points
// awarded when the total is worth any, both emails sent). It waits up to
// Settle after the load for the stragglers, so the last completion is a
// figure even when it is late, then runs the chaos checker's invariants
// over every order of the run.
//
// Guarantees: the stack keeps to itself (databases orderflow_bench_*,
// broker 127.0.0.1:29092, ports 28080–28084, email queues bench.* once
// cmd/orderflow passes EMAIL_QUEUE_PREFIX on; until then it refuses to
// start beside another stack's email worker) and starts from nothing; it
// is stopped however the run ends; a figure that could not be measured
// shows as "not measured", never as a number.
//
// Not provided: stable figures. The load generator and the SMTP sink run
// in this process on the same machine, which others share; quote the
// machine and expect noise.
package benchrun

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderflow/orderflow/internal/chaos"
	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/internal/smtptest"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/services/email"
)

// Config configures a run. DefaultConfig has the figures' settings.
type Config struct {
	Dir           string   // binaries, logs, the broker's data, samples.csv
	PostgresURL   string   // the server
	AMQPURL       string   //
	GoTestOutputs []string // files of go test -bench output; a missing one leaves its figures "not measured"
	Results       string   // the table, markdown
	Chart         string   // the chart, SVG; linked from Results by its path relative to it

	LatencyRate   float64       // orders/s of the latency phase
	LatencyFor    time.Duration //
	SustainedRate float64       // orders/s of the sustained phase
	SustainedFor  time.Duration //
	Grace         time.Duration // after the load, by when every order must be complete
	Settle        time.Duration // after the load, the most the run waits for the last order
	Out           io.Writer     // progress
}

// DefaultConfig is what make bench runs.
func DefaultConfig() Config {
	return Config{
		Dir:         filepath.Join(".data", "bench", time.Now().UTC().Format("20060102-150405")),
		PostgresURL: postgres.DefaultURL,
		AMQPURL:     email.DefaultAMQPURL,
		Results:     filepath.Join("bench", "results.md"),
		Chart:       filepath.Join("bench", "throughput-lag.svg"),
		LatencyRate: 300, LatencyFor: 10 * time.Second,
		SustainedRate: 1000, SustainedFor: 20 * time.Second,
		Grace: 20 * time.Second, Settle: 2 * time.Minute,
		Out: os.Stdout,
	}
}

// run is one run's state.
type run struct {
	cfg     Config
	stack   *stack
	sink    *smtptest.Server
	sampler *sampler
	t0      time.Time // the first phase's start: x = 0 of the chart
	marks   []mark

	acceptedN atomic.Int64 // 201s of every phase, for the chart
	orders    []chaos.Accepted
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Out, "benchrun: "+format+"\n", args...)
}

func (r *run) mark(label string) {
	r.marks = append(r.marks, mark{X: time.Since(r.t0).Seconds(), Label: label})
}

// Run measures, stops the stack, and writes Results and Chart. It returns
// an error when the stack could not run or the files not be written; a
// target not met is a figure, not an error.
func Run(ctx context.Context, cfg Config) error {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return err
	}
	r := &run{cfg: cfg}
	inproc, notes := readBenchOutputs(cfg.GoTestOutputs)
	machine := readMachine()

	r.logf("building cmd/orderflow and cmd/broker into %s", cfg.Dir)
	if err := chaos.BuildCommands(ctx, cfg.Dir, "broker", "orderflow"); err != nil {
		return err
	}
	st, err := newStack(cfg.Dir, cfg.PostgresURL)
	if err != nil {
		return err
	}
	r.stack = st
	if err := st.reset(ctx); err != nil {
		return err
	}
	sink, stopSMTP, err := smtptest.Serve("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer stopSMTP()
	sink.Discard()
	r.sink = sink
	defer st.stop() // again after the explicit stop: harmless
	if err := st.start(ctx, cfg.AMQPURL, sink.Addr); err != nil {
		return err
	}
	r.logf("stack ready (logs in %s)", cfg.Dir)
	if st.queuePrefix == "" {
		notes = append(notes, "cmd/orderflow declared the unprefixed email queues (it does not pass EMAIL_QUEUE_PREFIX on); no other email worker was on them.")
	}

	m, err := r.measure(ctx)
	st.stop()
	if err != nil {
		return err
	}
	m.machine, m.inproc, m.notes = machine, inproc, append(notes, m.notes...)
	return r.write(m)
}

// measured is everything the report shows.
type measured struct {
	machine    machine
	inproc     benchOutput
	latency    latencyResult
	sustained  sustainedResult
	invariants chaos.Report
	checked    bool
	samples    []sample
	done       map[string]time.Time // every complete order of the run
	notes      []string
}

// measure runs the phases with the sampler going.
func (r *run) measure(ctx context.Context) (measured, error) {
	var m measured
	r.sampler = &sampler{urls: r.stack.urls, client: newHTTPClient(),
		counters: func() (int, int) { return int(r.acceptedN.Load()), r.sink.Count() }}
	sctx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.sampler.run(sctx) })
	defer func() { stopSampling(); wg.Wait() }()
	r.t0 = time.Now()

	var err error
	if m.latency, err = r.latencyPhase(ctx); err != nil {
		return m, err
	}
	if m.sustained, err = r.sustainedPhase(ctx); err != nil {
		return m, err
	}
	stopSampling()
	wg.Wait()
	m.samples = r.sampler.all()

	ids := orderIDs(r.orders)
	if m.done, err = completions(ctx, r.stack.databases["orders"], r.stack.databases["email"], ids); err != nil {
		m.notes = append(m.notes, "completion of every order of the run: "+err.Error())
	}
	r.logf("checking the invariants over %d orders (the chaos checker)", len(r.orders))
	m.invariants = chaos.Check(ctx, chaos.Topology{
		Databases: r.stack.databases, Brokers: []string{brokerAddr}, AMQPURL: r.cfg.AMQPURL,
		QueuePrefix: r.stack.queuePrefix, FraudLimitCents: loadgen.DefaultFraudLimitCents,
	}, chaos.Expectation{Orders: r.orders})
	m.checked = true
	for _, line := range m.invariants.Violations[:min(10, len(m.invariants.Violations))] {
		r.logf("  violation: %s", line)
	}
	for _, line := range m.invariants.Pending[:min(5, len(m.invariants.Pending))] {
		r.logf("  pending: %s", line)
	}
	return m, nil
}

// load runs the generator at rate for d, happy orders only, and returns
// its summary and the accepted orders.
func (r *run) load(ctx context.Context, rate float64, d time.Duration) (loadgen.Summary, []chaos.Accepted, error) {
	out := &acceptedWriter{n: &r.acceptedN}
	sum, err := loadgen.Run(ctx, loadgen.Config{
		OrdersURL: r.stack.urls["orders"], WarehouseURL: r.stack.urls["warehouse"],
		Rate: rate, Duration: d, Mix: loadgen.Mix{loadgen.Happy: 1}, Out: out,
		Progress: func(s loadgen.Snapshot) { r.logf("  load: %s", s) },
	})
	orders := out.orders()
	r.orders = append(r.orders, orders...)
	return sum, orders, err
}

// acceptedWriter keeps loadgen's Out lines, "<orderId>\t<outcome>", and
// counts them as they come.
type acceptedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	n   *atomic.Int64
}

func (w *acceptedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n.Add(int64(bytes.Count(p, []byte{'\n'})))
	return w.buf.Write(p)
}

func (w *acceptedWriter) orders() []chaos.Accepted {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []chaos.Accepted
	sc := bufio.NewScanner(bytes.NewReader(w.buf.Bytes()))
	for sc.Scan() {
		if id, outcome, ok := strings.Cut(sc.Text(), "\t"); ok {
			out = append(out, chaos.Accepted{OrderID: id, Outcome: loadgen.Outcome(outcome)})
		}
	}
	return out
}

func orderIDs(orders []chaos.Accepted) []string {
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.OrderID
	}
	return ids
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errStackDown is returned when a process of the stack ended mid-run.
var errStackDown = errors.New("the stack stopped during the run")
