package benchrun

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orderflow/orderflow/internal/loadgen"
)

// machine is what the report says of the machine.
type machine struct {
	cores  int
	model  string
	memory string
}

// readMachine reads /proc/cpuinfo and /proc/meminfo; what it cannot read
// stays empty.
func readMachine() machine {
	m := machine{cores: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.model, m.cores = cpuModel(b, m.cores)
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.memory = memTotal(b)
	}
	return m
}

// cpuModel is the first "model name" of a /proc/cpuinfo and its
// "processor" count (def when none).
func cpuModel(cpuinfo []byte, def int) (string, int) {
	model, n := "", 0
	for line := range strings.Lines(string(cpuinfo)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			n++
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		}
	}
	if n == 0 {
		n = def
	}
	return model, n
}

// memTotal is /proc/meminfo's MemTotal in GiB, e.g. "23.5 GiB".
func memTotal(meminfo []byte) string {
	for line := range strings.Lines(string(meminfo)) {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if kb, err := strconv.ParseFloat(f[0], 64); err == nil && len(f) > 0 {
				return fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return ""
}

// readBenchOutputs parses each go test -bench output file; a file that
// cannot be read is a note.
func readBenchOutputs(paths []string) (benchOutput, []string) {
	all := benchOutput{Failed: map[string]bool{}}
	var notes []string
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			notes = append(notes, fmt.Sprintf("in-process benchmark output %s: %v", p, err))
			continue
		}
		out, err := parseBenchOutput(f)
		f.Close()
		if err != nil {
			notes = append(notes, fmt.Sprintf("in-process benchmark output %s: %v", p, err))
		}
		all.merge(out)
	}
	return all, notes
}

// figure is one row of the table.
type figure struct {
	name, measured, target string
	result                 string // met, not met, not measured, or "" for a figure without a target
}

const (
	met         = "met"
	notMet      = "**not met**"
	notMeasured = "not measured"
)

func verdict(ok bool) string {
	if ok {
		return met
	}
	return notMet
}

// inprocFigure is the row of a figure from the in-process benchmarks:
// the last value of unit reported by bench (any benchmark when ""),
// judged by ok.
func inprocFigure(o benchOutput, name, bench string, units []string, format func(float64) string, target string, ok func(float64) bool) figure {
	f := figure{name: name, target: target, result: notMeasured, measured: notMeasured}
	for _, u := range units {
		if v, from, found := o.find(bench, u); found {
			f.measured, f.result = format(v)+" ("+from+")", verdict(ok(v))
			return f
		}
	}
	if bench != "" && o.failed(bench) {
		f.measured = notMeasured + " (" + bench + " failed)"
	}
	return f
}

func fmtMS(v float64) string       { return strconv.FormatFloat(v, 'f', 2, 64) + " ms" }
func fmtRatio(v float64) string    { return strconv.FormatFloat(v, 'f', 2, 64) }
func fmtTimes(v float64) string    { return strconv.FormatFloat(v, 'f', 1, 64) + "×" }
func fmtPerSec(v float64) string   { return groupThousands(math.Round(v)) + "/s" }
func durMS(d time.Duration) string { return fmtMS(float64(d.Microseconds()) / 1000) }

// groupThousands prints 12345 as "12,345".
func groupThousands(v float64) string {
	s := strconv.FormatFloat(math.Abs(v), 'f', 0, 64)
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// figures are the table's rows.
func (r *run) figures(m measured) []figure {
	cfg, s, l := r.cfg, m.sustained, m.latency
	rate := cfg.SustainedRate
	grace := cfg.Grace.String()
	acceptedOK := s.sum.AcceptedRate >= 0.99*rate
	completeOK := s.orders > 0 && s.lateAtGrace == 0
	maxSlope := rate / cfg.SustainedFor.Seconds() // less than one second of orders over the whole load
	slopeOK := !math.IsNaN(s.slope) && s.slope <= maxSlope

	last := notMeasured
	switch {
	case s.orders == 0:
	case s.incomplete > 0:
		last = fmt.Sprintf("not all complete at +%s (%s)", s.waited, countOf(s.incomplete, s.orders, "left"))
	default:
		last = "+" + s.last.Round(100*time.Millisecond).String()
	}
	slopeText, slopeResult := notMeasured, notMeasured
	if !math.IsNaN(s.slope) {
		slopeText = fmt.Sprintf("%+.0f records/s (backlog %s when the load stopped)", s.slope, groupThousands(s.atStop))
		slopeResult = verdict(slopeOK)
	}
	sustainedName := fmt.Sprintf("Sustained %s orders/s for %s, whole stack with email", groupThousands(rate), cfg.SustainedFor)
	rows := []figure{
		{sustainedName, fmt.Sprintf("accepted %s of %s offered", fmtPerSec(s.sum.AcceptedRate), fmtPerSec(s.sum.SentRate)),
			fmt.Sprintf("≥ %s, all complete by +%s, lag not growing", fmtPerSec(rate), grace), verdict(acceptedOK && completeOK && slopeOK)},
		{"· offered rate (requests sent)", fmtPerSec(s.sum.SentRate), fmtPerSec(rate), verdict(s.sum.SentRate >= 0.99*rate)},
		{"· accepted rate (201s)", fmt.Sprintf("%s (%s orders)", fmtPerSec(s.sum.AcceptedRate), groupThousands(float64(s.sum.Accepted))),
			"≥ " + fmtPerSec(0.99*rate), verdict(acceptedOK)},
		{"· last order complete, after the load stopped", last, "≤ +" + grace, verdict(completeOK && s.incomplete == 0 && s.last <= cfg.Grace)},
		{"· orders incomplete at +" + grace, countOf(s.lateAtGrace, s.orders, ""), "0", verdict(completeOK)},
		{"· backlog growth over the load's second half", slopeText, fmt.Sprintf("≤ %.0f records/s", maxSlope), slopeResult},
	}
	latName := fmt.Sprintf("POST 201 → PaymentCaptured at %.0f/s", cfg.LatencyRate)
	if l.captured > 0 {
		rows = append(rows,
			figure{latName + ", p50", durMS(l.p50), "", ""},
			figure{latName + ", p99", fmt.Sprintf("%s (%s captured)", durMS(l.p99), countOf(l.captured, l.orders, "")),
				"≤ 100 ms", verdict(l.p99 <= 100*time.Millisecond && l.captured == l.orders)})
	} else {
		rows = append(rows, figure{latName + ", p99", notMeasured, "≤ 100 ms", notMeasured})
	}
	o := m.inproc
	rows = append(rows,
		inprocFigure(o, "Relay commit → consume p99 at 2,000 events/s", "BenchmarkRelayLatency", []string{"p99-ms"},
			fmtMS, "≤ 5 ms", func(v float64) bool { return v <= 5 }),
		inprocFigure(o, "Relay vs tuned Watermill, p99 ratio", "", []string{"p99-ratio-vs-tuned"},
			fmtRatio, "≤ 0.5", func(v float64) bool { return v <= 0.5 }),
		inprocFigure(o, "Relay vs tuned Watermill, drain ratio", "", []string{"drain-ratio-vs-tuned"},
			fmtTimes, "≥ 8×", func(v float64) bool { return v >= 8 }),
		inprocFigure(o, "POST /orders vs pgbench, same transaction", "BenchmarkOrdersPost", []string{"ratio"},
			fmtRatio, "≥ 0.6", func(v float64) bool { return v >= 0.6 }),
		inprocFigure(o, "Email throughput, outbox → RabbitMQ → SMTP", "BenchmarkEmailThroughput", []string{"emails/s"},
			fmtPerSec, "≥ 3,000/s", func(v float64) bool { return v >= 3000 }),
	)
	return rows
}

// countOf prints "3 of 20,000" (and a word after).
func countOf(n, of int, word string) string {
	s := groupThousands(float64(n)) + " of " + groupThousands(float64(of))
	if word != "" {
		s += " " + word
	}
	return s
}

// write writes the table, the chart and the samples.
func (r *run) write(m measured) error {
	var chart bytes.Buffer
	if err := writeChart(&chart, "Orderflow under orderflowctl load: throughput and lag", r.panels(m), r.marks); err != nil {
		return err
	}
	link, err := filepath.Rel(filepath.Dir(r.cfg.Results), r.cfg.Chart)
	if err != nil {
		link = r.cfg.Chart
	}
	var md bytes.Buffer
	r.writeMarkdown(&md, m, filepath.ToSlash(link))
	samplesPath := filepath.Join(r.cfg.Dir, "samples.csv")
	err = errors.Join(
		os.WriteFile(r.cfg.Chart, chart.Bytes(), 0o644),
		os.WriteFile(r.cfg.Results, md.Bytes(), 0o644),
		writeSamples(samplesPath, m.samples, r.t0),
	)
	if err == nil {
		r.logf("wrote %s, %s and %s", r.cfg.Results, r.cfg.Chart, samplesPath)
	}
	return err
}

func (r *run) writeMarkdown(w io.Writer, m measured, chartLink string) {
	cfg, s, l := r.cfg, m.sustained, m.latency
	mc := m.machine
	fmt.Fprintf(w, "# Benchmark results\n\n")
	fmt.Fprintf(w, "Written by `make bench` (cmd/benchrun) on %s: %d cores, %s, %s memory; %s, commit %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), mc.cores, orUnknown(mc.model), orUnknown(mc.memory), runtime.Version(), commit())
	fmt.Fprintf(w, "One run on a shared machine: the figures are noisy (other work on the same cores moves them by tens of per cent); quote the machine with them.\n\n")
	fmt.Fprintf(w, "| Figure | Measured | Target | Result |\n|---|---|---|---|\n")
	for _, f := range r.figures(m) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", f.name, f.measured, orDash(f.target), orDash(f.result))
	}
	fmt.Fprintf(w, "\n![Throughput and lag over the run](%s)\n\n", chartLink)

	fmt.Fprintf(w, "## How they were measured\n\n")
	fmt.Fprintf(w, "- Whole-system figures: `cmd/orderflow` (every service in one process, as `make run`) with `cmd/broker` as its own process, "+
		"fresh databases `%s*`, PostgreSQL and RabbitMQ local, emails to an SMTP sink in benchrun; WAREHOUSE_SHIP_DELAY=1s, LOYALTY_AWARD_DELAY=2s, "+
		"POSTGRES_MAX_CONNS=%s. Load from orderflowctl load's generator (internal/loadgen: open loop, happy orders, fresh SKUs) in benchrun's process, on the same cores.\n",
		databasePrefix, orDefault(os.Getenv("POSTGRES_MAX_CONNS")))
	fmt.Fprintf(w, "- Complete: orders says shipped and the points awarded (none for a total under 1.00), and the email service sent both emails; "+
		"completion time is the later of the order's last update and its last email, by the database's clock. "+
		"Backlog: every consumer group's lag plus every outbox's unpublished rows, from /metrics once a second.\n")
	fmt.Fprintf(w, "- POST 201 → PaymentCaptured: from the order's row to orders recording PaymentCaptured (order_timeline), as BenchmarkChoreography measures it in process.\n")
	fmt.Fprintf(w, "- The other figures are parsed from the in-process benchmarks' `go test -bench` output (./bench/... and bench/watermill).\n\n")

	fmt.Fprintf(w, "## Load\n\n| Phase | Offered | Accepted | Dropped | Late | Errors | Other answers | POST latency p50 / p99 |\n|---|---|---|---|---|---|---|---|\n")
	for _, p := range []struct {
		name string
		sum  summaryRow
	}{{fmt.Sprintf("%.0f/s for %s", cfg.LatencyRate, cfg.LatencyFor), rowOf(l.sum)}, {fmt.Sprintf("%.0f/s for %s", cfg.SustainedRate, cfg.SustainedFor), rowOf(s.sum)}} {
		fmt.Fprintf(w, "| %s | %s |\n", p.name, strings.Join(p.sum[:], " | "))
	}
	fmt.Fprintf(w, "\n")
	if m.checked {
		inv := m.invariants
		fmt.Fprintf(w, "Invariants over every order of the run (internal/chaos's checker, after the run): %d violations, %d pending",
			inv.Counts["violations"], inv.Counts["pending"])
		if n := inv.Counts["complete"]; n > 0 || inv.Counts["orders"] > 0 {
			fmt.Fprintf(w, "; %s complete", countOf(n, inv.Counts["orders"], ""))
		}
		fmt.Fprintf(w, ".\n")
		for _, line := range append(inv.Violations[:min(5, len(inv.Violations))], inv.Pending[:min(5, len(inv.Pending))]...) {
			fmt.Fprintf(w, "- `%s`\n", strings.ReplaceAll(line, "`", "'"))
		}
		fmt.Fprintf(w, "\n")
	}
	if len(m.notes) > 0 {
		fmt.Fprintf(w, "Notes:\n\n")
		for _, n := range m.notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// summaryRow is the load table's cells of one phase.
type summaryRow [7]string

func rowOf(s loadgen.Summary) summaryRow {
	if s.RunID == "" {
		return summaryRow{notMeasured, "", "", "", "", "", ""}
	}
	var other []string
	for code, n := range s.Rejected {
		other = append(other, fmt.Sprintf("%d×%d", n, code))
	}
	slices.Sort(other)
	return summaryRow{
		fmt.Sprintf("%s sent, %s", groupThousands(float64(s.Sent)), fmtPerSec(s.SentRate)),
		fmt.Sprintf("%s, %s", groupThousands(float64(s.Accepted)), fmtPerSec(s.AcceptedRate)),
		groupThousands(float64(s.Dropped)), groupThousands(float64(s.Late)), groupThousands(float64(s.Errors)),
		orDash(strings.Join(other, ", ")),
		durMS(s.Latency.P50) + " / " + durMS(s.Latency.P99),
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func orDefault(s string) string {
	if s == "" {
		return "the default"
	}
	return s
}

// commit is HEAD's short hash, "+ changes" when the checkout has any.
func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += " + uncommitted changes"
	}
	return c
}

// panels are the chart's plots.
func (r *run) panels(m measured) []panel {
	services := len(r.stack.urls)
	x := func(t time.Time) float64 { return t.Sub(r.t0).Seconds() }
	rate := func(name string, v func(sample) float64) series {
		s := series{Name: name}
		for i := 1; i < len(m.samples); i++ {
			a, b := m.samples[i-1], m.samples[i]
			if len(a.Services) < services || len(b.Services) < services {
				continue
			}
			if dt := b.At.Sub(a.At).Seconds(); dt > 0 {
				s.Points = append(s.Points, point{x(b.At), math.Max(0, (v(b)-v(a))/dt)})
			}
		}
		return s
	}
	level := func(name string, v func(sample) float64) series {
		s := series{Name: name}
		for _, smp := range m.samples {
			if len(smp.Services) == services {
				s.Points = append(s.Points, point{x(smp.At), v(smp)})
			}
		}
		return s
	}
	accepted := rate("accepted (201)", func(s sample) float64 { return float64(s.Accepted) })
	emails := rate("emails sent", func(s sample) float64 { return float64(s.Emails) })
	completed := series{Name: "orders completed", Points: completionRate(m.done, r.t0)}
	accepted.Color, completed.Color, emails.Color = "#1f77b4", "#2ca02c", "#ff7f0e"
	handled := rate("records handled (all consumers)", func(s sample) float64 { return s.total(metricHandled) })
	published := rate("events published (all relays)", func(s sample) float64 { return s.total(metricPublished) })
	handled.Color, published.Color = "#9467bd", "#8c564b"
	lag := level("consumer lag (all groups)", func(s sample) float64 { return s.total(metricLag) })
	outbox := level("outbox pending (all services)", func(s sample) float64 { return s.total(metricOutbox) })
	queue := level("email queues", func(s sample) float64 { return s.total(metricQueue) })
	lag.Color, outbox.Color, queue.Color = "#d62728", "#17becf", "#ff7f0e"
	return []panel{
		{Title: "Orders and emails per second", Unit: "per second", Series: []series{accepted, completed, emails}},
		{Title: "Records per second", Unit: "records/s", Series: []series{handled, published}},
		{Title: "Backlog", Unit: "records / messages", Series: []series{lag, outbox, queue}},
	}
}

// completionRate is the orders completed in each second since t0.
func completionRate(done map[string]time.Time, t0 time.Time) []point {
	if len(done) == 0 {
		return nil
	}
	per := map[int]int{}
	last := 0
	for _, at := range done {
		s := int(math.Floor(at.Sub(t0).Seconds()))
		per[s]++
		last = max(last, s)
	}
	var pts []point
	for s := 0; s <= last+1; s++ {
		pts = append(pts, point{float64(s) + 1, float64(per[s])})
	}
	return pts
}

// writeSamples writes every sample as CSV, seconds from t0 first.
func writeSamples(path string, samples []sample, t0 time.Time) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	cols := slices.Clone(sampledMetrics)
	fmt.Fprintf(w, "seconds,services,%s,accepted,emails\n", strings.Join(cols, ","))
	for _, s := range samples {
		fmt.Fprintf(w, "%.1f,%d", s.At.Sub(t0).Seconds(), len(s.Services))
		for _, c := range cols {
			fmt.Fprintf(w, ",%g", s.total(c))
		}
		fmt.Fprintf(w, ",%d,%d\n", s.Accepted, s.Emails)
	}
	return errors.Join(w.Flush(), f.Close())
}
