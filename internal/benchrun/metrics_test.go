package benchrun

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	const text = `# HELP orderflow_consumer_lag Records behind the high watermark.
# TYPE orderflow_consumer_lag gauge
orderflow_consumer_lag{partition="0",topic="orders"} 12
orderflow_consumer_lag{partition="1",topic="orders"} 30
orderflow_consumer_handled_total{result="ok",topic="a \"quoted\" one"} 1.5e+03
orderflow_outbox_pending 7
orderflow_broken{topic="x" 3
go_gc_duration_seconds{quantile="0.5"} NaN
`
	got, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if n := sum(got, metricLag); n != 42 {
		t.Errorf("lag %v, want 42", n)
	}
	if n := sum(got, metricHandled); n != 1500 {
		t.Errorf("handled %v, want 1500", n)
	}
	if n := sum(got, metricOutbox); n != 7 {
		t.Errorf("outbox %v, want 7", n)
	}
	if got[2].Labels["topic"] != `a "quoted" one` {
		t.Errorf("labels %v", got[2].Labels)
	}
	if sum(got, "orderflow_broken") != 0 {
		t.Error("a broken line was read")
	}
}

func TestBacklogSlope(t *testing.T) {
	t0 := time.Now()
	var samples []sample
	for i := range 10 {
		samples = append(samples, sample{At: t0.Add(time.Duration(i) * time.Second),
			Services: map[string]map[string]float64{"a": {metricLag: float64(100 + 50*i)}, "b": {metricOutbox: 10}}})
	}
	if s := backlogSlope(samples, t0, t0.Add(time.Minute)); math.Abs(s-50) > 1e-9 {
		t.Errorf("slope %v, want 50", s)
	}
	if s := backlogSlope(samples, t0.Add(8*time.Second), t0.Add(time.Minute)); !math.IsNaN(s) {
		t.Errorf("slope of 2 samples %v, want NaN", s)
	}
}

func TestMachineFiles(t *testing.T) {
	model, n := cpuModel([]byte("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"), 9)
	if model != "AMD EPYC 7B13" || n != 2 {
		t.Errorf("cpuModel = %q, %d", model, n)
	}
	if got := memTotal([]byte("MemTotal:       24683584 kB\nMemFree: 1 kB\n")); got != "23.5 GiB" {
		t.Errorf("memTotal = %q", got)
	}
	if got := groupThousands(1234567); got != "1,234,567" {
		t.Errorf("groupThousands = %q", got)
	}
}
