package outbox

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"

	"github.com/orderflow/orderflow/pkg/telemetry"

	"github.com/orderflow/orderflow/pkg/events/outbox/internal/outboxdb"
)

// defaultDrain bounds how long a stopping relay lets its batch in flight
// finish (Config.Drain), within service.DefaultShutdownTimeout;
// shutdownAckWait is how long a publish cut short (lost lease, drain over)
// still waits for acks already on their way.
const (
	defaultDrain    = 5 * time.Second
	shutdownAckWait = 2 * time.Second
)

// publisher is what a relay term publishes with: the Kafka producer, or a
// Config.Publisher.
type publisher interface {
	publish(ctx context.Context, source string, rows []outboxdb.PendingBatchRow) (int, error)
	close()
}

// external adapts a Config.Publisher.
type external struct{ p Publisher }

func (e external) publish(ctx context.Context, _ string, rows []outboxdb.PendingBatchRow) (int, error) {
	msgs := make([]Message, len(rows))
	for i, r := range rows {
		msgs[i] = Message{
			EventID: r.EventID, Topic: r.Topic, Key: r.Key, Type: r.EventType, Payload: r.Payload,
			CorrelationID: r.CorrelationID, Traceparent: r.Traceparent, OccurredAt: r.OccurredAt,
		}
	}
	return e.p.Publish(ctx, msgs)
}

func (external) close() {}

// producer is the relay's one idempotent Kafka producer.
type producer struct {
	cl     *kgo.Client
	traced bool // kotel's hooks are on the client
}

func newProducer(brokers []string, instrumented []kgo.Opt, traced bool) (*producer, error) {
	cl, err := kgo.NewClient(append(slices.Clone(instrumented),
		kgo.SeedBrokers(brokers...),
		// Idempotent (franz-go's default) with acks=all: retries never
		// duplicate or reorder records within a partition.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Kafka's murmur2 on the key: every client maps an order to the same
		// partition.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		// The relay batches rows itself; lingering would only add latency.
		kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(50000),
		// No delivery timeout or retry limit (franz-go's defaults), and none
		// for a topic the broker does not know yet either: while the broker
		// is down or still creating topics, records wait in order instead of
		// failing and being re-sent behind rows that went out.
		kgo.UnknownTopicRetries(-1),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return &producer{cl: cl, traced: traced}, nil
}

func (p *producer) close() { p.cl.Close() }

// publish produces rows in order and waits for the broker's acks. It
// returns how many rows from the start of the batch were acked: the cursor
// may move past those only. Rows after a failure are sent again with the
// next batch; with no retry limit a failure means shutdown or a record the
// broker rejects for good (such as one over its size limit).
func (p *producer) publish(ctx context.Context, source string, rows []outboxdb.PendingBatchRow) (int, error) {
	errs := make([]error, len(rows))
	var wg sync.WaitGroup
	wg.Add(len(rows))
	for i := range rows {
		p.cl.Produce(ctx, record(source, &rows[i], p.traced), func(_ *kgo.Record, err error) {
			errs[i] = err
			wg.Done()
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }() // ends at the latest when the client closes
	select {
	case <-done:
	case <-ctx.Done():
		// Shutdown or lost lease: give acks already on their way a moment,
		// so a clean stop does not re-publish the batch, then count none
		// that has not answered.
		select {
		case <-done:
		case <-time.After(shutdownAckWait):
			return 0, ctx.Err()
		}
	}
	for i, err := range errs {
		if err != nil {
			return i, fmt.Errorf("produce %s to %s: %w", rows[i].EventID, rows[i].Topic, err)
		}
	}
	return len(rows), nil
}

// record builds the Kafka record of an outbox row: the event JSON as value,
// the orderId as key, CloudEvents binary-mode headers plus tracing.
func record(source string, r *outboxdb.PendingBatchRow, traced bool) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, 8)
	headers = append(headers,
		kgo.RecordHeader{Key: "ce_specversion", Value: []byte("1.0")},
		kgo.RecordHeader{Key: "ce_id", Value: []byte(r.EventID.String())},
		kgo.RecordHeader{Key: "ce_type", Value: []byte(r.EventType)},
		kgo.RecordHeader{Key: "ce_source", Value: []byte(source)},
		kgo.RecordHeader{Key: "ce_time", Value: r.OccurredAt.UTC().AppendFormat(nil, time.RFC3339Nano)},
		kgo.RecordHeader{Key: "content-type", Value: []byte("application/json")},
		kgo.RecordHeader{Key: "x-correlation-id", Value: []byte(r.CorrelationID)},
	)
	rec := &kgo.Record{
		Topic:   r.Topic,
		Key:     []byte(r.Key),
		Value:   r.Payload,
		Headers: headers,
	}
	if r.Traceparent != "" {
		// Passed on as written; with tracing on, kotel's hook replaces it
		// with its publish span, a child of the span that wrote the row.
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "traceparent", Value: []byte(r.Traceparent)})
		if traced {
			rec.Context = telemetry.Propagator.Extract(context.Background(), kotel.NewRecordCarrier(rec))
		}
	}
	return rec
}
