package benchrun

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// benchResult is one result line of `go test -bench`: the benchmark's
// name without its -GOMAXPROCS suffix, its package (from the "pkg:" line
// before it), the iterations and every value/unit pair, b.ReportMetric's
// units included ("1.23 p99-ms").
type benchResult struct {
	Pkg, Name string
	N         int
	Metrics   map[string]float64
}

// benchOutput is what one or more `go test -bench` outputs say.
type benchOutput struct {
	Results []benchResult
	Failed  map[string]bool // benchmarks with a "--- FAIL:" line
}

// parseBenchOutput reads go test -bench output. Lines it does not know
// (logs, PASS, ok, build errors) are skipped, so a missing or broken
// benchmark only leaves its figures out.
func parseBenchOutput(r io.Reader) (benchOutput, error) {
	out := benchOutput{Failed: map[string]bool{}}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimSpace(strings.TrimPrefix(line, "pkg: "))
		case strings.HasPrefix(line, "--- FAIL: Benchmark"):
			if f := strings.Fields(strings.TrimPrefix(line, "--- FAIL: ")); len(f) > 0 {
				out.Failed[benchName(f[0])] = true
			}
		case strings.HasPrefix(line, "Benchmark"):
			if res, ok := parseResultLine(line); ok {
				res.Pkg = pkg
				out.Results = append(out.Results, res)
			}
		}
	}
	return out, sc.Err()
}

// parseResultLine reads "BenchmarkX-2  1  5000 ns/op  1.2 p99-ms ...". A
// name alone (printed before the benchmark's logs) is not a result.
func parseResultLine(line string) (benchResult, bool) {
	f := strings.Fields(line)
	if len(f) < 4 {
		return benchResult{}, false
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return benchResult{}, false
	}
	res := benchResult{Name: benchName(f[0]), N: n, Metrics: map[string]float64{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			break
		}
		res.Metrics[f[i+1]] = v
	}
	return res, len(res.Metrics) > 0
}

// benchName strips the -GOMAXPROCS suffix: BenchmarkX/sub-2 → BenchmarkX/sub.
func benchName(s string) string {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return s
	}
	if _, err := strconv.Atoi(s[i+1:]); err != nil {
		return s
	}
	return s[:i]
}

// find is the last value of unit reported by bench (or one of its
// sub-benchmarks; any benchmark when bench is ""). ok is false when none
// reported it.
func (o benchOutput) find(bench, unit string) (v float64, name string, ok bool) {
	for _, r := range o.Results {
		if bench != "" && r.Name != bench && !strings.HasPrefix(r.Name, bench+"/") {
			continue
		}
		if x, has := r.Metrics[unit]; has {
			v, name, ok = x, r.Name, true
		}
	}
	return v, name, ok
}

// failed reports whether bench (or one of its sub-benchmarks) failed.
func (o benchOutput) failed(bench string) bool {
	for name := range o.Failed {
		if bench == "" || name == bench || strings.HasPrefix(name, bench+"/") {
			return true
		}
	}
	return false
}

// merge adds p's results and failures to o.
func (o *benchOutput) merge(p benchOutput) {
	o.Results = append(o.Results, p.Results...)
	for k := range p.Failed {
		o.Failed[k] = true
	}
}
