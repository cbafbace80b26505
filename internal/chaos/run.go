// Package chaos is make chaos: the whole system as separate processes (each
// service from its cmd/, the broker from cmd/broker with its data dir)
// under steady open-loop load (package loadgen), one fault after another
// (scenarios), and after each an invariant check (Check) polled until the
// system has converged or a deadline passed. It prints one table and fails
// on any violation or a system that did not converge.
//
// The stack keeps to itself: databases orderflow_chaos_*, queues chaos.*,
// its own broker on 127.0.0.1:19092 and HTTP ports 18080–18084, so it runs
// beside make run. It starts from nothing (those databases dropped, the
// broker's data and the queues deleted) and leaves its state and every
// process's log under the run directory for a look afterwards.
//
// Faults that stop PostgreSQL or RabbitMQ start them again however the
// run ends: on return, on SIGINT/SIGTERM (handled) and, for a SIGKILL of
// this process, by the trap in scripts/chaos.
package chaos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/internal/smtptest"
	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

// Settings configure a run.
type Settings struct {
	Dir              string        // run directory: binaries, logs, broker data
	PostgresURL      string        // the server
	AMQPURL          string        //
	Rate             float64       // orders per second while a scenario runs
	BurstRate        float64       // orders per second of the bursts before a database fault
	Lead, Tail       time.Duration // load before and after each fault
	Hold             time.Duration // how long timed faults last
	Converge         time.Duration // the most a scenario may take to converge
	Only             []string      // scenario names to run; none: all
	EmailRetryDelays string
	ShipDelay        time.Duration
	AwardDelay       time.Duration
	FraudLimitCents  int64
	Out              io.Writer // progress and the table
}

// Short is the form CI runs (about 5 minutes); Soak puts about 20,000 orders
// through every scenario.
func Short() Settings {
	return Settings{
		Rate: 15, BurstRate: 400, Lead: 3 * time.Second, Tail: 3 * time.Second, Hold: 8 * time.Second, Converge: 3 * time.Minute,
		EmailRetryDelays: "2s,10s,30s,60s", ShipDelay: time.Second, AwardDelay: 3 * time.Second,
		FraudLimitCents: loadgen.DefaultFraudLimitCents,
	}
}

// Soak is Short with the load and the faults of the long run.
func Soak() Settings {
	s := Short()
	s.Rate, s.Lead, s.Tail, s.Hold, s.Converge = 40, 10*time.Second, 10*time.Second, 15*time.Second, 6*time.Minute
	return s
}

// runner is one run's state, shared by the scenarios.
type runner struct {
	settings Settings
	stack    *stack
	smtp     *smtptest.Server
	amqpURL  string
	top      Topology
	expect   Expectation
	out      io.Writer
	outMu    sync.Mutex
}

func (r *runner) logf(format string, args ...any) {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	fmt.Fprintf(r.out, format+"\n", args...)
}

// result is one row of the table.
type result struct {
	scenario  string
	what      string
	accepted  int // orders accepted during it
	total     int // accepted so far
	sent      int
	recovered time.Duration // from the fault's end to convergence
	status    string
	details   []string
}

// Run runs the scenarios and returns an error when an invariant broke or
// the system did not converge; it restores PostgreSQL and RabbitMQ
// whatever happens.
func Run(ctx context.Context, s Settings) (err error) {
	defer func() {
		for _, restore := range []func() error{startPostgres, startRabbit} {
			if rerr := restore(); rerr != nil && err == nil {
				err = fmt.Errorf("restoring: %w", rerr)
			}
		}
	}()
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return err
	}
	r := &runner{settings: s, out: s.Out, amqpURL: s.AMQPURL}
	sink, stopSMTP, err := smtptest.Serve("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer stopSMTP()
	r.smtp = sink
	r.logf("chaos: building the stack into %s", s.Dir)
	if err := buildStack(ctx, s.Dir); err != nil {
		return err
	}
	r.stack = newStack(s.Dir, s.PostgresURL, s.AMQPURL, sink.Addr, s)
	if err := r.stack.reset(ctx); err != nil {
		return err
	}
	deleteQueues(s.AMQPURL, s.EmailRetryDelays)
	dbs, err := r.stack.databases()
	if err != nil {
		return err
	}
	r.top = Topology{Databases: dbs, Brokers: []string{brokerAddr}, AMQPURL: s.AMQPURL,
		QueuePrefix: queuePrefix, SMTP: sink, FraudLimitCents: s.FraudLimitCents}
	defer r.stack.stopAll()
	if err := r.stack.start(ctx); err != nil {
		return err
	}
	r.logf("chaos: stack ready (logs in %s)", s.Dir)

	var results []result
	failed := false
	for _, sc := range scenarios(s.Hold) {
		if len(s.Only) > 0 && !contains(s.Only, sc.name) {
			continue
		}
		res := r.scenario(ctx, sc)
		results = append(results, res)
		if ctx.Err() != nil {
			break
		}
		if res.status != "ok" && !strings.HasPrefix(res.status, "skipped") {
			failed = true
		}
	}
	printTable(s.Out, results)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case failed:
		return fmt.Errorf("invariants broken or not recovered (see the table; logs in %s)", s.Dir)
	}
	return nil
}

// scenario runs one fault under load and checks the invariants after it.
func (r *runner) scenario(ctx context.Context, sc scenario) result {
	res := result{scenario: sc.name, what: sc.what}
	for _, cmd := range sc.needs {
		if _, err := exec.LookPath(cmd); err != nil {
			res.status = "skipped: no " + cmd
			return res
		}
	}
	r.logf("chaos: %s: %s", sc.name, sc.what)
	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var accepted bytes.Buffer
	var summary loadgen.Summary
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		summary, _ = loadgen.Run(lctx, loadgen.Config{
			OrdersURL: url("orders"), WarehouseURL: url("warehouse"), Rate: r.settings.Rate,
			Duration: 24 * time.Hour, FraudLimitCents: r.settings.FraudLimitCents, Out: &lockedWriter{w: &accepted},
			Timeout: 5 * time.Second,
		})
	}()
	err := sleep(ctx, r.settings.Lead)
	if err == nil {
		err = sc.run(ctx, r)
	}
	faultEnded := time.Now()
	if err == nil {
		err = sleep(ctx, r.settings.Tail)
	}
	stopLoad()
	<-loaded
	orders := parseAccepted(accepted.Bytes())
	r.expect.Orders = append(r.expect.Orders, orders...)
	res.accepted, res.total, res.sent = len(orders), len(r.expect.Orders), summary.Sent
	if err != nil {
		res.status = "fault failed: " + err.Error()
		return res
	}
	rep, converged := r.converge(ctx)
	res.recovered = time.Since(faultEnded).Round(100 * time.Millisecond)
	switch {
	case len(rep.Violations) > 0:
		res.status, res.details = "VIOLATED", rep.Violations
	case !converged:
		res.status, res.details = "NOT RECOVERED", rep.Pending
	default:
		res.status = "ok"
	}
	r.logf("chaos: %s: %s (%d orders accepted, %d so far; recovered in %s)", sc.name, res.status, res.accepted, res.total, res.recovered)
	for _, d := range res.details[:min(len(res.details), 20)] {
		r.logf("    %s", d)
	}
	return res
}

// burst places Settings.BurstRate orders a second for two seconds, beside
// the steady load, and returns at once when they are accepted: more than
// the stack handles as they come, so records queue in every topic and the
// fault that follows finds work in hand.
func (r *runner) burst(ctx context.Context) error {
	var accepted bytes.Buffer
	sum, err := loadgen.Run(ctx, loadgen.Config{
		OrdersURL: url("orders"), WarehouseURL: url("warehouse"), Rate: r.settings.BurstRate,
		Duration: 2 * time.Second, FraudLimitCents: r.settings.FraudLimitCents, Out: &accepted, Timeout: 5 * time.Second,
	})
	if err != nil {
		return err
	}
	orders := parseAccepted(accepted.Bytes())
	r.expect.Orders = append(r.expect.Orders, orders...)
	r.logf("  burst: %d orders accepted at %.0f/s", len(orders), sum.AcceptedRate)
	return nil
}

// converge polls Check until the system converged, an invariant broke, or
// Settings.Converge passed.
func (r *runner) converge(ctx context.Context) (Report, bool) {
	deadline := time.Now().Add(r.settings.Converge)
	lastSaid := time.Now()
	for {
		rep := Check(ctx, r.top, r.expect)
		if len(rep.Violations) > 0 || rep.Converged() {
			return rep, rep.Converged()
		}
		if time.Since(lastSaid) >= 20*time.Second {
			lastSaid = time.Now()
			r.logf("  waiting for: %s", strings.Join(rep.Pending[:min(3, len(rep.Pending))], "; "))
		}
		if time.Now().After(deadline) || sleep(ctx, 2*time.Second) != nil {
			return rep, false
		}
	}
}

// parseAccepted reads loadgen's Out lines: "<orderId>\t<outcome>".
func parseAccepted(b []byte) []Accepted {
	var out []Accepted
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		id, outcome, ok := strings.Cut(sc.Text(), "\t")
		if ok {
			out = append(out, Accepted{OrderID: id, Outcome: loadgen.Outcome(outcome)})
		}
	}
	return out
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func printTable(w io.Writer, results []result) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tfault\tsent\taccepted\ttotal\trecovered in\tresult")
	for _, r := range results {
		rec := "-"
		if r.recovered > 0 {
			rec = r.recovered.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", r.scenario, r.what, r.sent, r.accepted, r.total, rec, r.status)
	}
	tw.Flush()
}

// deleteQueues removes the chaos stack's queues and exchanges, so its
// topology is declared afresh (a changed retry delay would not redeclare).
func deleteQueues(amqpURL, delays string) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return // the stack's start reports it
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	defer ch.Close()
	topo := rabbit.EmailTopology(parseDelays(delays)).WithPrefix(queuePrefix)
	for _, q := range topo.Queues() {
		_, _ = ch.QueueDelete(q, false, false, false)
	}
	for _, ex := range []string{topo.Exchange, topo.RetryExchange(), topo.DeadExchange()} {
		_ = ch.ExchangeDelete(ex, false, false)
	}
}

func parseDelays(s string) []time.Duration {
	var ds []time.Duration
	for _, p := range strings.Split(s, ",") {
		if d, err := time.ParseDuration(p); err == nil {
			ds = append(ds, d)
		}
	}
	return ds
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// DefaultDir is where runs keep their state, one directory per run.
func DefaultDir() string {
	return filepath.Join(".data", "chaos", time.Now().UTC().Format("20060102-150405"))
}
