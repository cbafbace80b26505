// Package servicetest runs one service for a test the way production does
// (its Run, a fresh database, a free port, the test broker), feeds it
// events the way other services would, and watches what it emits.
package servicetest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
)

// Config is the shared configuration of a service under test: a fresh
// database owned by a role of its own, as postgres.Bootstrap makes them
// (both dropped when t ends), a free port, the broker, a small pool and
// a 1 ms first retry backoff.
func Config(t testing.TB, broker *kafkatest.Broker) service.Config {
	t.Helper()
	owner := pgtest.NewOwner(t)
	return service.Config{
		HTTPAddr:     testenv.FreeAddr(t),
		PostgresURL:  pgtest.ServerURL(),
		Database:     owner.Database,
		Role:         owner.Role,
		MaxConns:     2, // and the consumer's 2 and the relay's 2
		Brokers:      broker.Addrs,
		Kafka:        broker.Service,
		RetryBackoff: time.Millisecond,
	}
}

// Pool opens a pool on the service's database as its role (what the test
// writes there the service may read and write), closed when t ends.
func Pool(t testing.TB, c service.Config) *pgxpool.Pool {
	t.Helper()
	u, err := postgres.AsRole(c.PostgresURL, c.Database, c.RoleName(), c.PostgresPassword)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// WaitReady waits until GET base/readyz answers 200.
func WaitReady(t testing.TB, base string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, base+"/readyz 200", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// GetJSON decodes GET url's body into v and returns the status code.
func GetJSON(t testing.TB, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// WaitJSON polls GET url into a fresh T until cond holds, and returns it.
func WaitJSON[T any](t testing.TB, url string, cond func(T) bool) T {
	t.Helper()
	var v T
	testenv.WaitFor(t, 30*time.Second, "GET "+url, func() bool {
		v = *new(T)
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&v) == nil && cond(v)
	})
	return v
}

// Producer writes events to the broker as their services' relays do.
type Producer struct{ cl *kgo.Client }

// NewProducer returns a producer closed when t ends.
func NewProducer(t testing.TB, broker *kafkatest.Broker) *Producer {
	t.Helper()
	cl, err := kgo.NewClient(broker.Opts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &Producer{cl: cl}
}

// Produce completes ev's envelope (event, version, a new eventId, the time)
// where empty and writes it to its topic; it returns the record value, so
// a test can produce it again verbatim with ProduceRaw.
func (p *Producer) Produce(t testing.TB, ev contract.Event) []byte {
	t.Helper()
	value := complete(t, ev)
	p.ProduceRaw(t, ev, value)
	return value
}

// ProduceAt is Produce returning the record as written, with its
// partition and offset, for WaitConsumed.
func (p *Producer) ProduceAt(t testing.TB, ev contract.Event) *kgo.Record {
	t.Helper()
	rec, err := p.cl.ProduceSync(context.Background(), p.record(t, ev, complete(t, ev))).First()
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// WaitConsumed waits until group has committed offsets past every one of
// recs (records as written, partition and offset set): each was handled,
// passed over or dead-lettered, and so was everything before it on its
// partition.
func WaitConsumed(t testing.TB, broker *kafkatest.Broker, group string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(broker.Opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("%s past %d records", group, len(recs)), func() bool {
		offsets, err := adm.FetchOffsets(context.Background(), group)
		if err != nil {
			return false
		}
		for _, r := range recs {
			o, ok := offsets.Lookup(r.Topic, r.Partition)
			if !ok || o.At <= r.Offset {
				return false
			}
		}
		return true
	})
}

// ProduceAll produces evs as Produce does, in one batch: the records are
// written in order per key, and all acknowledged when it returns.
func (p *Producer) ProduceAll(t testing.TB, evs ...contract.Event) {
	t.Helper()
	recs := make([]*kgo.Record, 0, len(evs))
	for _, ev := range evs {
		recs = append(recs, p.record(t, ev, complete(t, ev)))
	}
	if err := p.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// complete fills ev's envelope where empty and returns its JSON.
func complete(t testing.TB, ev contract.Event) []byte {
	t.Helper()
	m := ev.Meta()
	m.Event, m.Version = ev.Name(), 1
	if m.EventID == "" {
		m.EventID = uuid.Must(uuid.NewV7()).String()
	}
	if m.OccurredAt.IsZero() {
		m.OccurredAt = time.Now().UTC()
	}
	value, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return value
}

// ProduceRaw writes value as ev's record: key = orderId, the CloudEvents
// headers of docs/design.md and x-correlation-id "test-<orderId>".
func (p *Producer) ProduceRaw(t testing.TB, ev contract.Event, value []byte) {
	t.Helper()
	if err := p.cl.ProduceSync(context.Background(), p.record(t, ev, value)).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (p *Producer) record(t testing.TB, ev contract.Event, value []byte) *kgo.Record {
	t.Helper()
	m := ev.Meta()
	topic, ok := contract.TopicOf(ev.Name())
	if !ok {
		t.Fatalf("no topic for %s", ev.Name())
	}
	return &kgo.Record{Topic: topic, Key: []byte(m.OrderID), Value: value, Headers: []kgo.RecordHeader{
		{Key: "ce_specversion", Value: []byte("1.0")},
		{Key: "ce_id", Value: []byte(m.EventID)},
		{Key: "ce_type", Value: []byte(ev.Name())},
		{Key: "ce_source", Value: []byte("orderflow/" + topic)},
		{Key: "ce_time", Value: []byte(m.OccurredAt.Format(time.RFC3339Nano))},
		{Key: "content-type", Value: []byte("application/json")},
		{Key: "x-correlation-id", Value: []byte("test-" + m.OrderID)},
	}}
}

// Record is an event a Collector saw.
type Record struct {
	Envelope contract.Envelope
	Value    []byte
	Headers  map[string]string
}

// Collector reads topics from their start and keeps each order's events
// in the order read.
type Collector struct {
	mu     sync.Mutex
	events map[string][]Record // by orderId
}

// Collect starts reading topics until t ends.
func Collect(t testing.TB, broker *kafkatest.Broker, topics ...string) *Collector {
	t.Helper()
	cl, err := kgo.NewClient(broker.Opts(kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	c := &Collector{events: map[string][]Record{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				rec := Record{Value: r.Value, Headers: map[string]string{}}
				if json.Unmarshal(r.Value, &rec.Envelope) != nil {
					return
				}
				for _, h := range r.Headers {
					rec.Headers[h.Key] = string(h.Value)
				}
				c.mu.Lock()
				c.events[rec.Envelope.OrderID] = append(c.events[rec.Envelope.OrderID], rec)
				c.mu.Unlock()
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return c
}

// Records returns the order's events seen so far.
func (c *Collector) Records(orderID string) []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Record(nil), c.events[orderID]...)
}

// Names returns the names of the order's events seen so far.
func (c *Collector) Names(orderID string) []string {
	var names []string
	for _, r := range c.Records(orderID) {
		names = append(names, r.Envelope.Event)
	}
	return names
}

// WaitLast waits until the order's events end with last and returns all
// their names.
func (c *Collector) WaitLast(t testing.TB, orderID, last string) []string {
	t.Helper()
	var names []string
	testenv.WaitFor(t, 30*time.Second, last+" for "+orderID, func() bool {
		names = c.Names(orderID)
		return len(names) > 0 && names[len(names)-1] == last
	})
	return names
}
