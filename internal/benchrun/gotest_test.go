package benchrun

import (
	"math"
	"strings"
	"testing"
)

// goTestOutput is go test -bench output as make bench tees it: both
// modules, logs, a failed benchmark and a sub-benchmark.
const goTestOutput = `goos: linux
goarch: amd64
pkg: github.com/orderflow/orderflow/bench
cpu: AMD EPYC
BenchmarkChoreography-2   	       1	95012345678 ns/op	       812.5 p50-ms	      2875 p99-ms	         0 sustained-orders/s
--- BENCH: BenchmarkChoreography-2
    choreography_test.go:215: 300/s: 3000 orders, capture latency p50 812ms
BenchmarkEmailThroughput
--- FAIL: BenchmarkEmailThroughput
    email_test.go:97: 19990 tasks recorded sent (<nil>), want 20000
BenchmarkOrdersPost-2     	       1	10000000000 ns/op	      1502 orders/s	        20.1 p50-ms	        61.0 p99-ms	      3003 pgbench-tx/s	         0.5002 ratio
BenchmarkRelayLatency-2   	       1	5100000000 ns/op	         3.1 p50-ms	        12.25 p99-ms	        40.0 max-ms
FAIL
exit status 1
FAIL	github.com/orderflow/orderflow/bench	300.1s
pkg: github.com/orderflow/orderflow/bench/watermill
BenchmarkRelayVsWatermill/drain-2         	       1	 2000000 ns/op	     81000 orderflow-events/s	      9000 watermill-tuned-events/s	         9.0 drain-ratio-vs-tuned
BenchmarkRelayVsWatermill/latency-2       	       1	 2000000 ns/op	       4.0 orderflow-p99-ms	      10.0 watermill-tuned-p99-ms	         0.4 p99-ratio-vs-tuned
ok  	github.com/orderflow/orderflow/bench/watermill	12.0s
`

func TestParseBenchOutput(t *testing.T) {
	out, err := parseBenchOutput(strings.NewReader(goTestOutput))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 5 {
		t.Fatalf("%d results, want 5: %+v", len(out.Results), out.Results)
	}
	tests := []struct {
		bench, unit string
		want        float64
		from        string
	}{
		{"BenchmarkRelayLatency", "p99-ms", 12.25, "BenchmarkRelayLatency"},
		{"BenchmarkOrdersPost", "ratio", 0.5002, "BenchmarkOrdersPost"},
		{"BenchmarkChoreography", "ns/op", 95012345678, "BenchmarkChoreography"},
		{"", "drain-ratio-vs-tuned", 9, "BenchmarkRelayVsWatermill/drain"},
		{"BenchmarkRelayVsWatermill", "p99-ratio-vs-tuned", 0.4, "BenchmarkRelayVsWatermill/latency"},
	}
	for _, tt := range tests {
		t.Run(tt.bench+" "+tt.unit, func(t *testing.T) {
			v, from, ok := out.find(tt.bench, tt.unit)
			if !ok || v != tt.want || from != tt.from {
				t.Errorf("find = %v, %q, %v; want %v from %q", v, from, ok, tt.want, tt.from)
			}
		})
	}
	if _, _, ok := out.find("BenchmarkEmailThroughput", "emails/s"); ok {
		t.Error("a failed benchmark without a result line gave a figure")
	}
	if !out.failed("BenchmarkEmailThroughput") || out.failed("BenchmarkRelayLatency") {
		t.Errorf("failed = %v", out.Failed)
	}
	if got := out.Results[len(out.Results)-1].Pkg; got != "github.com/orderflow/orderflow/bench/watermill" {
		t.Errorf("package %q", got)
	}
}

func TestInprocFigures(t *testing.T) {
	out, err := parseBenchOutput(strings.NewReader(goTestOutput))
	if err != nil {
		t.Fatal(err)
	}
	r := &run{cfg: DefaultConfig()}
	rows := map[string]figure{}
	for _, f := range r.figures(measured{inproc: out, sustained: sustainedResult{slope: math.NaN()}}) {
		rows[f.name] = f
	}
	for name, want := range map[string]string{
		"Relay commit → consume p99 at 2,000 events/s": notMet,
		"Relay vs tuned Watermill, p99 ratio":          met,
		"Relay vs tuned Watermill, drain ratio":        met,
		"POST /orders vs pgbench, same transaction":    notMet,
		"Email throughput, outbox → RabbitMQ → SMTP":   notMeasured,
		"POST 201 → PaymentCaptured at 300/s, p99":     notMeasured,
	} {
		if got := rows[name].result; got != want {
			t.Errorf("%s: %q (%s), want %q", name, got, rows[name].measured, want)
		}
	}
	if got := rows["Email throughput, outbox → RabbitMQ → SMTP"].measured; !strings.Contains(got, "failed") {
		t.Errorf("a failed benchmark's figure reads %q", got)
	}
}

func TestBenchName(t *testing.T) {
	for in, want := range map[string]string{
		"BenchmarkX-2": "BenchmarkX", "BenchmarkX/sub-case-16": "BenchmarkX/sub-case", "BenchmarkX": "BenchmarkX",
		"BenchmarkX/a-b": "BenchmarkX/a-b",
	} {
		if got := benchName(in); got != want {
			t.Errorf("benchName(%q) = %q, want %q", in, got, want)
		}
	}
}
