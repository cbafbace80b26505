package timer

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/pkg/events/timer/internal/timerdb"
)

// metrics are the timer worker's Prometheus series.
type metrics struct {
	fired   *prometheus.CounterVec
	pending *prometheus.Desc
	w       *Worker
}

func newMetrics(w *Worker, reg prometheus.Registerer) *metrics {
	m := &metrics{
		fired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_timers_fired_total",
			Help: "FireFunc calls whose transaction committed, by kind and result (ok: fired; retry: failed and rescheduled).",
		}, []string{"kind", "result"}),
		pending: prometheus.NewDesc("orderflow_timers_pending",
			"Pending timers in this service's database, due or not, by kind.", []string{"kind"}, nil),
		w: w,
	}
	if reg != nil {
		reg.MustRegister(m.fired, m)
	}
	return m
}

func (m *metrics) count(kind string, fired bool) {
	result := "retry"
	if fired {
		result = "ok"
	}
	m.fired.WithLabelValues(kind, result).Inc()
}

// Describe implements prometheus.Collector for the pending gauge.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.pending }

// Collect counts pending timers at scrape time, so the gauge is exact
// without a background poller. Kinds with a FireFunc are reported even at
// zero.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := timerdb.New(m.w.cfg.Pool).PendingByKind(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.pending, err)
		return
	}
	pending := make(map[string]int64, len(m.w.kinds))
	for _, k := range m.w.kinds {
		pending[k] = 0
	}
	for _, r := range rows {
		pending[r.Kind] = r.Pending
	}
	for kind, n := range pending {
		ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(n), kind)
	}
}
