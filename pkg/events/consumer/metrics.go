package consumer

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
)

// metrics are the consumer's Prometheus series (docs/design.md "Observability").
type metrics struct {
	handled       *prometheus.CounterVec
	handleSeconds *prometheus.HistogramVec
	lag           *prometheus.Desc
	r             *Runner
}

func newMetrics(r *Runner, reg prometheus.Registerer) *metrics {
	m := &metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_consumer_handled_total",
			Help: "Records handled by the consumer, by topic and result (ok, duplicate, retry, dead, skipped, ignored).",
		}, []string{"topic", "result"}),
		handleSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orderflow_consumer_handle_seconds",
			Help:    "Time from picking a record up to finishing it (committed, duplicate, skipped, ignored or dead-lettered), retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18), // 0.5 ms .. ~65 s
		}, []string{"topic"}),
		lag: prometheus.NewDesc("orderflow_consumer_lag",
			"Records behind the high watermark, from the group's committed offsets, of the partitions assigned to this replica: sum by (group, topic) over replicas is the group's lag.",
			[]string{"group", "topic", "partition"}, nil),
		r: r,
	}
	if reg != nil {
		reg.MustRegister(m.handled, m.handleSeconds, m)
	}
	return m
}

func (m *metrics) count(topic, result string) {
	m.handled.WithLabelValues(topic, result).Inc()
}

// Describe implements prometheus.Collector for the lag gauge.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.lag }

// Collect asks the brokers at scrape time (kadm's Lag: the group's
// committed offsets against each partition's high watermark; a partition
// without a commit counts from its log start), so the gauge is what
// `orderflowctl lag` would print, without a background poller. Each
// replica reports only the partitions assigned to it, so summing the
// replicas' series counts every partition once; a partition that is
// between owners during a rebalance is reported by none for that moment.
// Nothing is reported while Run is not running.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	cl := m.r.client.Load()
	if cl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lags, err := kadm.NewClient(cl).Lag(ctx, m.r.group)
	if err == nil {
		err = lags.Error()
	}
	if err != nil {
		// Not an invalid metric: that would fail the whole scrape while
		// the group is still forming or the broker is away.
		m.r.log.Debug("consumer lag", "err", err)
		return
	}
	topics := make(map[string]bool, len(m.r.cfg.Topics))
	for _, t := range m.r.cfg.Topics {
		topics[t] = true
	}
	self, _ := cl.GroupMetadata()
	lags.Each(func(l kadm.DescribedGroupLag) {
		for _, pl := range l.Lag.Sorted() {
			if pl.Err != nil || !topics[pl.Topic] || pl.Member == nil || pl.Member.MemberID != self {
				continue
			}
			ch <- prometheus.MustNewConstMetric(m.lag, prometheus.GaugeValue, float64(pl.Lag),
				m.r.group, pl.Topic, strconv.Itoa(int(pl.Partition)))
		}
	})
}
