package outbox

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/pkg/events/outbox/internal/outboxdb"
)

// metrics are the outbox's Prometheus series (docs/design.md "Observability").
type metrics struct {
	published *prometheus.CounterVec
	pending   *prometheus.Desc
	oldestAge *prometheus.Desc
	leader    *prometheus.Desc
	o         *Outbox
}

func newMetrics(o *Outbox, reg prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_relay_published_total",
			Help: "Outbox events the relay published and the broker acked, by topic and event: the rate of OrderPlaced, PaymentCaptured, OrderShipped... is orders by outcome.",
		}, []string{"topic", "event"}),
		pending: prometheus.NewDesc("orderflow_outbox_pending",
			"Unpublished rows in this service's outbox.", nil, nil),
		oldestAge: prometheus.NewDesc("orderflow_outbox_oldest_age_seconds",
			"Age of the oldest unpublished row in this service's outbox, 0 when none.", nil, nil),
		leader: prometheus.NewDesc("orderflow_relay_leader",
			"1 while this replica's relay holds its outbox's lease, else 0: max over a service's replicas is 1 when its outbox has a relay.", nil, nil),
		o: o,
	}
	if reg != nil {
		reg.MustRegister(m.published, m)
	}
	return m
}

// Describe implements prometheus.Collector for the backlog gauges.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.pending
	ch <- m.oldestAge
	ch <- m.leader
}

// Collect reads the backlog at scrape time: one indexed query, so the gauges
// are exact without a background poller.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	leader := 0.0
	if m.o.leader.Load() {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(m.leader, prometheus.GaugeValue, leader)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := outboxdb.New(m.o.pool).Backlog(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.pending, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(b.Pending))
	ch <- prometheus.MustNewConstMetric(m.oldestAge, prometheus.GaugeValue, b.OldestAgeSeconds)
}

// countPublished counts rows the broker acked.
func (m *metrics) countPublished(rows []outboxdb.PendingBatchRow) {
	var topic, event string
	var c prometheus.Counter
	for i := range rows {
		if rows[i].Topic != topic || rows[i].EventType != event {
			topic, event = rows[i].Topic, rows[i].EventType
			c = m.published.WithLabelValues(topic, event)
		}
		c.Inc()
	}
}
