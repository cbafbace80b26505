package payments

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/kafka"
)

// step is one record of a scenario: ev, as value (its JSON, or a
// duplicate or poison produced verbatim).
type step struct {
	ev    contract.Event
	value []byte
}

// TestBatchEqualsOneByOne commits one scenario's records to the topics
// before the service starts, all on one partition of each topic, so the
// runner hands them to the handler as real batches: one order's records
// several times in a batch (placed then cancelled, cancelled before placed,
// cancelled twice) or in batches one after the other, a duplicate eventId inside the batch, two poison records
// in the middle (one not JSON, dead-lettered by the runner before the
// handler; one the handler cannot decode), a tok_flaky charge in the middle
// and a decline, a fraud and an out-of-stock among them. The effects
// (payments, remembered cancellations, the events in the outbox with their
// correlation ids, the dead letters) must be exactly those of the same
// records handled one at a time by a second instance, and the expected
// ones.
func TestBatchEqualsOneByOne(t *testing.T) {
	t.Parallel()
	o := map[string]string{} // name → order id, all on partition 0
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "j", "k", "poison1", "poison2"} {
		o[name] = orderOnPartition0(t)
	}
	dup := placed(o["d"], tokenVisa, 2500)
	poison2 := placed(o["poison2"], tokenVisa, 2500)
	undecodable := bytes.Replace(complete(t, poison2),
		[]byte(`"totalCents":2500,`), []byte(`"totalCents":2500.0,`), 1) // valid JSON Schema, not an int64
	var steps []step
	for _, ev := range []contract.Event{
		placed(o["a"], tokenVisa, 2500),
		placed(o["b"], tokenVisa, 1000),
		dup,
		cancelled(o["a"], "customer_request"),
		cancelled(o["c"], "customer_request"),
		cancelled(o["k"], "customer_request"), // placed in a later batch
		dup,                                   // the same eventId again, in the same batch
		cancelled(o["c"], "changed_mind"),
		placed(o["c"], tokenVisa, 2500),
		placed(o["d"], tokenVisa, 2500), // the same order under a new eventId
		nil,                             // not JSON
		placed(o["e"], tokenFlaky, 2500),
		placed(o["f"], tokenDeclined, 2500),
		poison2,
		placed(o["g"], tokenVisa, DefaultFraudLimitCents+1),
		cancelled(o["f"], "customer_request"),
		cancelled(o["e"], "customer_request"),
		cancelled(o["a"], "again"),
		placed(o["h"], tokenVisa, 700),
		placed(o["k"], tokenVisa, 2500),
		&contract.StockUnavailable{Envelope: contract.Envelope{OrderID: o["j"]}, SKUs: []string{"SKU-1"}},
		&contract.StockUnavailable{Envelope: contract.Envelope{OrderID: o["j"]}, SKUs: []string{"SKU-2"}},
	} {
		switch {
		case ev == nil:
			steps = append(steps, step{cancelled(o["poison1"], "x"), []byte("{not json")})
		case ev == poison2:
			steps = append(steps, step{ev, undecodable})
		default:
			steps = append(steps, step{ev, complete(t, ev)})
		}
	}
	want := map[string]string{
		"a": "payment refunded customer_request 2500 attempts 1; events PaymentCaptured PaymentRefunded",
		"b": "payment captured  1000 attempts 1; events PaymentCaptured",
		"c": "payment failed cancelled_before_payment 2500 attempts 1; cancelled customer_request",
		"d": "payment captured  2500 attempts 1; events PaymentCaptured",
		"e": "payment refunded customer_request 2500 attempts 3; events PaymentCaptured PaymentRefunded",
		"f": "payment failed declined 2500 attempts 1; events PaymentFailed",
		"g": "payment failed fraud_suspected 1000001 attempts 1; events PaymentFailed",
		"h": "payment captured  700 attempts 1; events PaymentCaptured",
		"j": "cancelled out_of_stock",
		"k": "payment failed cancelled_before_payment 2500 attempts 1; cancelled customer_request",
	}

	batched := runScenario(t, steps, false)
	alone := runScenario(t, steps, true)
	for name, id := range o {
		if got := batched.orders[id].summary; got != want[name] {
			t.Errorf("order %s: %q, want %q", name, got, want[name])
		}
		if b, a := batched.orders[id], alone.orders[id]; b != a {
			t.Errorf("order %s batched:\n%+v\none by one:\n%+v", name, b, a)
		}
	}
	if batched.dead != 2 || alone.dead != 2 {
		t.Errorf("dead letters: %d batched, %d one by one; want 2", batched.dead, alone.dead)
	}
	// Several records' events in one transaction: the batch was real.
	if batched.maxPerTx < 3 || alone.maxPerTx != 1 {
		t.Errorf("most events of one transaction: %d batched (want 3 or more), %d one by one (want 1)",
			batched.maxPerTx, alone.maxPerTx)
	}
}

// orderOnPartition0 is a new order id that Kafka's default partitioner
// (murmur2 of the key) puts on partition 0.
func orderOnPartition0(t *testing.T) string {
	p := kgo.StickyKeyPartitioner(nil).ForTopic(contract.TopicOrders)
	for {
		id := uuid.Must(uuid.NewV7()).String()
		if p.Partition(&kgo.Record{Key: []byte(id)}, kafka.Partitions) == 0 {
			return id
		}
	}
}

// outcome is what a scenario left behind.
type outcome struct {
	orders   map[string]orderOutcome // by order id
	dead     int64                   // records in dlq.payments
	maxPerTx int                     // the most outbox rows one transaction wrote
}

// orderOutcome is one order's effects: summary for reading, the rest to
// compare whole (payment ids left out: they are new UUIDs each time).
type orderOutcome struct {
	summary string
	payment string // the payments row
	events  string // outbox rows in order: type, correlation id, payload
}

// runScenario runs a service on a fresh broker and database and produces
// steps to it: all before it starts when alone is false, else each once the
// one before it was consumed, so that each is a transaction of its own.
func runScenario(t *testing.T, steps []step, alone bool) outcome {
	t.Helper()
	broker := kafkatest.Start(t)
	cfg := Config{Config: servicetest.Config(t, broker)}
	producer := servicetest.NewProducer(t, broker)
	produced := map[string]int64{} // records per topic, all on partition 0
	consumed := func() {
		var recs []*kgo.Record
		for topic, n := range produced {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Offset: n - 1})
		}
		servicetest.WaitConsumed(t, broker, "orderflow-"+serviceName, recs...)
	}
	start := func() {
		testenv.Start(t, func(ctx context.Context) error { return Run(ctx, cfg, slog.New(slog.DiscardHandler)) })
		servicetest.WaitReady(t, "http://"+cfg.HTTPAddr)
	}
	if alone {
		start()
	}
	for _, s := range steps {
		producer.ProduceRaw(t, s.ev, s.value)
		topic, _ := contract.TopicOf(s.ev.Name())
		produced[topic]++
		if alone {
			consumed()
		}
	}
	if !alone {
		start()
	}
	consumed()
	return scan(t, broker, servicetest.Pool(t, cfg.Config))
}

// scan reads the scenario's outcome from the service's database and the
// broker's dead-letter topic.
func scan(t *testing.T, broker *kafkatest.Broker, pool *pgxpool.Pool) outcome {
	t.Helper()
	out := outcome{orders: map[string]orderOutcome{}, dead: deadLetters(t, broker)}
	add := func(id string, f func(*orderOutcome)) {
		o := out.orders[id]
		f(&o)
		out.orders[id] = o
	}
	paymentIDs := map[string]string{}
	for _, p := range query[struct {
		ID, PaymentID, Status, Reason string
		Amount                        int64
		Attempts                      int32
		Rest                          string
	}](t, pool, `SELECT order_id::text, payment_id::text, status, reason, amount_cents, attempts,
		concat_ws(' ', customer_id, email, currency, items) FROM payments`) {
		paymentIDs[p.ID] = p.PaymentID
		add(p.ID, func(o *orderOutcome) {
			o.summary = fmt.Sprintf("payment %s %s %d attempts %d", p.Status, p.Reason, p.Amount, p.Attempts)
			o.payment = p.Rest
		})
	}
	for _, f := range query[struct{ ID, Reason string }](t, pool,
		"SELECT order_id::text, cancel_reason FROM order_flags WHERE cancelled") {
		add(f.ID, func(o *orderOutcome) { o.summary = strings.TrimPrefix(o.summary+"; cancelled "+f.Reason, "; ") })
	}

	perTx := map[string]int{}
	names := map[string][]string{}
	for _, e := range query[struct{ ID, Name, CorrelationID, Payload, TxID string }](t, pool,
		"SELECT key, event_type, correlation_id, payload::text, txid::text FROM outbox ORDER BY txid, id") {
		if e.CorrelationID != "test-"+e.ID {
			t.Errorf("%s of order %s has correlation id %q, want that of its record", e.Name, e.ID, e.CorrelationID)
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(e.Payload), &fields); err != nil {
			t.Fatal(err)
		}
		if pid, ok := fields["paymentId"]; ok && pid != paymentIDs[e.ID] {
			t.Errorf("%s of order %s names payment %v, not the order's %s", e.Name, e.ID, pid, paymentIDs[e.ID])
		}
		for _, f := range []string{"eventId", "occurredAt", "paymentId"} {
			delete(fields, f)
		}
		canon, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		add(e.ID, func(o *orderOutcome) { o.events += fmt.Sprintf("%s %s %s\n", e.Name, e.CorrelationID, canon) })
		names[e.ID] = append(names[e.ID], e.Name)
		perTx[e.TxID]++
	}
	for id, n := range names {
		add(id, func(o *orderOutcome) { o.summary += "; events " + strings.Join(n, " ") })
	}
	out.maxPerTx = slices.Max(slices.Collect(maps.Values(perTx)))
	return out
}

// query collects sql's rows into Ts, column by field.
func query[T any](t *testing.T, pool *pgxpool.Pool, sql string) []T {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[T])
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// deadLetters is how many records dlq.payments holds.
func deadLetters(t *testing.T, broker *kafkatest.Broker) int64 {
	t.Helper()
	cl, err := kgo.NewClient(broker.Opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), "dlq."+serviceName)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}
