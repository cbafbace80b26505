package email

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/pkg/events/rabbit"
	"github.com/orderflow/orderflow/services/email/internal/emaildb"
)

// queueMetrics reads the queue series at scrape time:
// orderflow_amqp_queue_messages{queue}, each queue's ready messages (a
// passive declare), and orderflow_amqp_oldest_message_age_seconds{queue}
// for the work queue: the age of the oldest task not yet sent or parked,
// wherever it is (email.send, a retry queue, a worker's hands, or the
// outbox). RabbitMQ does not tell a message's age without its management
// plugin; the task table does.
type queueMetrics struct {
	conn  *rabbit.Conn
	pool  *pgxpool.Pool
	depth *prometheus.Desc
	age   *prometheus.Desc
}

func newQueueMetrics(conn *rabbit.Conn, pool *pgxpool.Pool) *queueMetrics {
	return &queueMetrics{
		conn: conn, pool: pool,
		depth: prometheus.NewDesc("orderflow_amqp_queue_messages", "Messages ready in the queue.", []string{"queue"}, nil),
		age: prometheus.NewDesc("orderflow_amqp_oldest_message_age_seconds",
			"Age of the oldest email task not yet sent or parked.", []string{"queue"}, nil),
	}
}

func (m *queueMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.depth
	ch <- m.age
}

func (m *queueMetrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	topo := m.conn.Topology()
	for _, q := range topo.Queues() {
		if n, err := m.conn.QueueDepth(ctx, q); err == nil {
			ch <- prometheus.MustNewConstMetric(m.depth, prometheus.GaugeValue, float64(n), q)
		}
	}
	if age, err := emaildb.New(m.pool).OldestQueued(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(m.age, prometheus.GaugeValue, age, topo.Queue)
	}
}
