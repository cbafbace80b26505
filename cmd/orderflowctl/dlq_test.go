package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

// deadRecord is a record as the consumer runner dead-letters it.
func deadRecord(dlq, origin, eventID string) *kgo.Record {
	return &kgo.Record{Topic: dlq, Partition: 0, Key: []byte("order-1"),
		Value: []byte(`{"event":"OrderPlaced","version":1,"eventId":"` + eventID + `","orderId":"order-1"}`),
		Headers: []kgo.RecordHeader{
			{Key: "x-correlation-id", Value: []byte("corr-1")},
			{Key: "x-dlq-topic", Value: []byte(origin)}, {Key: "x-dlq-partition", Value: []byte("3")},
			{Key: "x-dlq-offset", Value: []byte("41")}, {Key: "x-dlq-error", Value: []byte("boom")},
			{Key: "x-dlq-attempts", Value: []byte("5")},
		}}
}

// Dead letters of a dlq.* topic: listed with where they failed, shown
// whole, replayed to the topic they failed in with their key and headers
// but without the x-dlq-* ones, and a second replay sends only what was
// dead-lettered since.
func TestDLQKafkaListShowReplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	suffix := randomSuffix()
	origin, dlq := "dlqtest."+suffix, "dlq.dlqtest-"+suffix
	broker := kafkatest.Start(t)
	if err := kafka.EnsureTopics(ctx, broker.Addrs, broker.Admin, origin, dlq); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(broker.Opts(kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(deadRecord(dlq, origin, "e-1"), deadRecord(dlq, origin, "e-2"))

	recs, _, err := kafkaDeadLetters(ctx, cl, dlq, nil)
	if err != nil || len(recs) != 2 {
		t.Fatalf("read %d dead letters (%v), want 2", len(recs), err)
	}
	var list bytes.Buffer
	printDeadLetters(&list, []deadLetter{recordDeadLetter(recs[0]), recordDeadLetter(recs[1])})
	for _, want := range []string{dlq + " 0:0", "e-1", "e-2", "OrderPlaced", origin + " 3:41", "boom"} {
		if !strings.Contains(list.String(), want) {
			t.Errorf("list lacks %q:\n%s", want, list.String())
		}
	}
	var show bytes.Buffer
	if err := dlqShow(ctx, cl, dlq, "0:1", &show); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(show.String(), `"eventId": "e-2"`) || !strings.Contains(show.String(), "x-dlq-error: boom") {
		t.Errorf("show 0:1:\n%s", show.String())
	}
	if err := dlqShow(ctx, cl, dlq, "0:7", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "no record at 0:7") {
		t.Errorf("show of a missing offset = %v", err)
	}

	if n, err := replayKafka(ctx, cl, dlq); n != 2 || err != nil {
		t.Fatalf("replay = %d, %v; want 2", n, err)
	}
	if n, err := replayKafka(ctx, cl, dlq); n != 0 || err != nil {
		t.Fatalf("second replay = %d, %v; want 0", n, err)
	}
	produce(deadRecord(dlq, origin, "e-3"))
	if n, err := replayKafka(ctx, cl, dlq); n != 1 || err != nil {
		t.Fatalf("replay after a new dead letter = %d, %v; want 1", n, err)
	}
	replayed, _, err := kafkaDeadLetters(ctx, cl, origin, nil)
	if err != nil || len(replayed) != 3 {
		t.Fatalf("%s holds %d records (%v), want 3", origin, len(replayed), err)
	}
	for _, r := range replayed {
		if string(r.Key) != "order-1" || len(r.Headers) != 1 || r.Headers[0].Key != "x-correlation-id" {
			t.Errorf("replayed record key %q headers %v; want the key and only x-correlation-id", r.Key, r.Headers)
		}
	}
}

// Parked email tasks: listed without being taken, then moved back to the
// work queue with their attempts reset and their other properties kept.
func TestDLQEmailListReplay(t *testing.T) {
	t.Parallel()
	topo := amqptest.Topology(t)
	conn := amqptest.Conn(t, topo)
	if err := conn.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"task-1", "task-2"} {
		amqptest.Publish(t, "", topo.DeadQueue(), amqp.Publishing{MessageId: id, Type: "SendEmail", CorrelationId: "corr-1",
			Headers: amqp.Table{rabbit.HeaderAttempts: int64(5), rabbit.HeaderError: "451 busy", "x-correlation-id": "corr-1"},
			Body:    []byte(`{}`)})
	}
	dls, err := queueDeadLetters(amqptest.URL(), topo)
	if err != nil || len(dls) != 2 {
		t.Fatalf("listed %d (%v), want 2", len(dls), err)
	}
	if dls[0].id != "task-1" || dls[0].attempts != "5" || dls[0].err != "451 busy" {
		t.Errorf("listed %+v", dls[0])
	}
	testenv.WaitFor(t, 10*time.Second, "listed tasks back in the dead queue", func() bool {
		n, err := conn.QueueDepth(context.Background(), topo.DeadQueue())
		return err == nil && n == 2
	})
	if n, err := replayQueue(amqptest.URL(), topo); n != 2 || err != nil {
		t.Fatalf("replay = %d, %v; want 2", n, err)
	}
	for range 2 {
		m, ok := amqptest.Get(t, topo.Queue, 5*time.Second)
		if !ok {
			t.Fatal("a replayed task is missing from the work queue")
		}
		if _, has := m.Headers[rabbit.HeaderAttempts]; has || m.Headers["x-correlation-id"] != "corr-1" || m.Type != "SendEmail" || m.CorrelationId != "corr-1" {
			t.Errorf("replayed %s with headers %v type %q", m.MessageId, m.Headers, m.Type)
		}
	}
	if n, err := conn.QueueDepth(context.Background(), topo.DeadQueue()); err != nil || n != 0 {
		t.Errorf("dead queue holds %d (%v) after the replay, want 0", n, err)
	}
}
