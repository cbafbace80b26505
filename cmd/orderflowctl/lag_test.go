package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// Every kind of backlog, made on purpose, shows in the table with its
// count: two unpublished outbox rows, a consumer group two records behind,
// a ready email task, a parked one, and dead-lettered records. Names are
// unique to the test, so it runs beside others and against a real Kafka.
func TestLagShowsEveryBacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	suffix := randomSuffix()
	svc := "lagtest-" + suffix

	// An outbox with two rows written and none published.
	dbURL := pgtest.NewDatabase(t)
	pool, err := postgres.Connect(ctx, dbURL, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := outbox.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	broker := kafkatest.Start(t)
	o := outbox.New(pool, outbox.Config{Service: svc, Brokers: broker.Addrs, Kafka: broker.Admin}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return o.Write(ctx, tx,
			&contract.OrderCancelled{Envelope: contract.Envelope{OrderID: "0193a000-0000-7000-8000-000000000001"}, Reason: "customer_request"},
			&contract.OrderCancelled{Envelope: contract.Envelope{OrderID: "0193a000-0000-7000-8000-000000000002"}, Reason: "customer_request"})
	})
	if err != nil {
		t.Fatal(err)
	}

	// The service's group has committed 1 of 3 records of its topic, and
	// its dead-letter topic holds 2 records.
	topic, dlq := "lagtest."+suffix, "dlq."+svc
	if err := kafka.EnsureTopics(ctx, broker.Addrs, broker.Admin, topic, dlq); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(broker.Opts(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, r := range []*kgo.Record{{Value: []byte("1")}, {Value: []byte("2")}, {Value: []byte("3")}, {Topic: dlq, Value: []byte("a")}, {Topic: dlq, Value: []byte("b")}} {
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: topic, Partition: 0, At: 1, LeaderEpoch: -1})
	if err := kadm.NewClient(cl).CommitAllOffsets(ctx, "orderflow-"+svc, offsets); err != nil {
		t.Fatal(err)
	}

	// One task ready in the work queue, one parked.
	topo := amqptest.Topology(t)
	if err := amqptest.Conn(t, topo).Ready(ctx); err != nil {
		t.Fatal(err)
	}
	amqptest.Publish(t, topo.Exchange, topo.RoutingKey, amqp.Publishing{Body: []byte(`{}`)})
	amqptest.Publish(t, "", topo.DeadQueue(), amqp.Publishing{Body: []byte(`{}`)})

	rows := gatherLag(ctx, sources{databases: map[string]string{svc: dbURL}, brokers: broker.Addrs, kafkaOpts: broker.Admin.Opts(), amqpURL: amqptest.URL(), topology: topo})
	var out bytes.Buffer
	printLag(&out, rows)
	t.Log("\n" + out.String())
	want := map[string]int64{
		"outbox " + svc: 2,
		"consumer orderflow-" + svc + " " + topic: 2,
		"queue " + topo.Queue:                     1,
		"queue " + topo.RetryQueue(1):             0,
		"dead letters " + topo.DeadQueue():        1,
		"dead letters " + dlq:                     2,
	}
	got := map[string]backlog{}
	for _, r := range rows {
		got[r.kind+" "+r.name] = r
	}
	for k, n := range want {
		r, ok := got[k]
		switch {
		case !ok:
			t.Errorf("no line %q", k)
		case r.err != nil:
			t.Errorf("%s: %v", k, r.err)
		case r.count != n:
			t.Errorf("%s = %d, want %d", k, r.count, n)
		}
	}
	if r := got["outbox "+svc]; r.oldest <= 0 {
		t.Errorf("outbox oldest age %v, want > 0", r.oldest)
	}
	if !strings.Contains(out.String(), "BACKLOG") {
		t.Errorf("no table header:\n%s", out.String())
	}
}

// A source that does not answer shows as unavailable, and the others
// still show.
func TestLagNamesUnavailableSources(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20e9)
	defer cancel()
	topo := amqptest.Topology(t)
	rows := gatherLag(ctx, sources{
		databases: map[string]string{"orders": "postgres://postgres@127.0.0.1:1/none?connect_timeout=2"},
		brokers:   kafkatest.Start(t).Addrs, amqpURL: "amqp://guest:guest@127.0.0.1:1/", topology: topo,
	})
	var out bytes.Buffer
	printLag(&out, rows)
	if n := strings.Count(out.String(), "unavailable"); n < 2 {
		t.Errorf("want the database and RabbitMQ unavailable, got:\n%s", out.String())
	}
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
