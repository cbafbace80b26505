package consumer_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/inbox"
	"github.com/orderflow/orderflow/pkg/events/kafka"
)

type bundle struct {
	pool    *pgxpool.Pool
	broker  *kafkatest.Broker
	service string // unique per test, so group ids and DLQ topics do not collide
	topic   string
	log     *slog.Logger
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if err := inbox.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	// The handlers' effect: one row per applied event.
	_, err := pool.Exec(ctx, `CREATE TABLE effects (
		id bigserial PRIMARY KEY, event_id uuid NOT NULL, order_id text NOT NULL,
		seq int NOT NULL, runner text NOT NULL DEFAULT '')`)
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{pool: pool, broker: kafkatest.Start(t), service: "test-" + randHex(4),
		topic: contract.TopicOrders, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if b.broker.Embedded == nil {
		// A shared real cluster: a topic of our own, so a new group does
		// not read other tests' records.
		b.topic = "orders.test-" + randHex(4)
	}
	if err := kafka.EnsureTopics(ctx, b.broker.Addrs, kafka.Security{}, b.topic, "dlq."+b.service); err != nil {
		t.Fatal(err)
	}
	return b
}

func randHex(n int) string {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}

// applyEffect is the usual test handler: it inserts one effect row in tx.
func applyEffect(runner string) consumer.Handler {
	return func(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
		var ev struct {
			Seq int `json:"seq"`
		}
		_ = json.Unmarshal(msg.Value, &ev)
		_, err := tx.Exec(ctx, "INSERT INTO effects (event_id, order_id, seq, runner) VALUES ($1, $2, $3, $4)",
			msg.Envelope.EventID, msg.Envelope.OrderID, ev.Seq, runner)
		return err
	}
}

func (b *bundle) newRunner(t *testing.T, h consumer.Handler, mod func(*consumer.Config)) (*consumer.Runner, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := consumer.Config{
		Service: b.service, Brokers: b.broker.Addrs, Topics: []string{b.topic},
		Handler: h, Pool: b.pool, BaseBackoff: time.Millisecond, Registerer: reg,
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := consumer.New(cfg, b.log)
	if err != nil {
		t.Fatal(err)
	}
	return r, reg
}

func start(t *testing.T, r *consumer.Runner) *testenv.Running {
	return testenv.Start(t, r.Run)
}

// placed returns a valid OrderPlaced for orderID as JSON, with seq as an
// extra field (schemas allow unknown fields) to check ordering.
func placed(t testing.TB, orderID string, seq int) ([]byte, string) {
	t.Helper()
	id := uuid.New().String()
	e := contract.OrderPlaced{
		Envelope: contract.Envelope{Event: "OrderPlaced", Version: 1, EventID: id, OrderID: orderID,
			OccurredAt: time.Now().UTC()},
		CustomerID: "c-1", Email: "ada@example.com",
		Items:      []contract.Item{{SKU: "sku-1", Quantity: 2, UnitPriceCents: 500}},
		TotalCents: 1000, Currency: "EUR", PaymentToken: "tok_visa",
	}
	raw, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["seq"] = seq
	if raw, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := contract.Validate("OrderPlaced", 1, raw); err != nil {
		t.Fatal(err)
	}
	return raw, id
}

func (b *bundle) record(key string, value []byte) *kgo.Record {
	return &kgo.Record{Topic: b.topic, Key: []byte(key), Value: value, Headers: []kgo.RecordHeader{
		{Key: "x-correlation-id", Value: []byte("corr-" + key)},
		{Key: "content-type", Value: []byte("application/json")},
	}}
}

func (b *bundle) produce(t testing.TB, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.broker.Addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// deadLetters reads want records from the DLQ topic, failing after a
// deadline, then checks no more arrive shortly after.
func (b *bundle) deadLetters(t *testing.T, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.broker.Addrs...), kgo.ConsumeTopics("dlq."+b.service),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []*kgo.Record
	deadline := time.Now().Add(15 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		fs := cl.PollFetches(ctx)
		cancel()
		got = append(got, fs.Records()...)
	}
	if len(got) != want {
		t.Fatalf("DLQ has %d records, want %d", len(got), want)
	}
	return got
}

// waitMembers waits until group is stable with n members, each assigned
// some partitions.
func (b *bundle) waitMembers(t *testing.T, group string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.broker.Addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("%d members with partitions", n), func() bool {
		gs, err := adm.DescribeGroups(context.Background(), group)
		if err != nil {
			return false
		}
		g, ok := gs[group]
		if !ok || g.State != "Stable" || len(g.Members) != n {
			return false
		}
		for _, m := range g.Members {
			a, ok := m.Assigned.AsConsumer()
			if !ok || len(a.Topics) == 0 {
				return false
			}
		}
		return true
	})
}

func (b *bundle) count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (b *bundle) effects(t testing.TB) int { return b.count(t, "SELECT count(*) FROM effects") }

// handled reads orderflow_consumer_handled_total{topic, result} from reg.
func handled(t testing.TB, reg *prometheus.Registry, topic, result string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "orderflow_consumer_handled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["topic"] == topic && l["result"] == result {
				return int(m.GetCounter().GetValue())
			}
		}
	}
	return 0
}

func header(rec *kgo.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestHappyPath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orderID := uuid.NewString()
	value, eventID := placed(t, orderID, 1)

	var seen atomic.Pointer[consumer.Message]
	var sameTx, keyLocked atomic.Bool
	var ctxCorrelation atomic.Value
	h := func(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
		seen.Store(&msg)
		ctxCorrelation.Store(correlation.ID(ctx))
		// The inbox row is already there, in this transaction.
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM processed_events WHERE event_id = $1", msg.Envelope.EventID).Scan(&n); err != nil {
			return err
		}
		sameTx.Store(n == 1)
		// The order's lock (outbox.LockKey) is held, so one order's
		// transactions serialize before their first write.
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted`).Scan(&n); err != nil {
			return err
		}
		keyLocked.Store(n == 1)
		return applyEffect("")(ctx, tx, msg)
	}
	var afterCommits atomic.Int32
	r, reg := b.newRunner(t, h, func(c *consumer.Config) { c.AfterCommit = func() { afterCommits.Add(1) } })
	if r.Ready(context.Background()) == nil {
		t.Error("Ready before Run")
	}
	start(t, r)
	b.produce(t, b.record(orderID, value))

	testenv.WaitFor(t, 20*time.Second, "the effect", func() bool { return b.effects(t) == 1 })
	if err := r.Ready(context.Background()); err != nil {
		t.Errorf("Ready: %v", err)
	}
	testenv.WaitFor(t, 5*time.Second, "ok counted", func() bool { return handled(t, reg, b.topic, "ok") == 1 })
	msg := seen.Load()
	if msg.Envelope.Event != "OrderPlaced" || msg.Envelope.EventID != eventID || msg.Key != orderID ||
		msg.Topic != b.topic || msg.CorrelationID != "corr-"+orderID || msg.Headers["content-type"] != "application/json" {
		t.Errorf("message = %+v", msg)
	}
	if got := ctxCorrelation.Load(); got != "corr-"+orderID {
		t.Errorf("correlation id in ctx = %v", got)
	}
	if !sameTx.Load() {
		t.Error("the handler's transaction does not hold the inbox row")
	}
	if !keyLocked.Load() {
		t.Error("the handler ran without the order's lock")
	}
	if n := afterCommits.Load(); n != 1 {
		t.Errorf("AfterCommit called %d times, want 1", n)
	}
	if n := b.count(t, "SELECT count(*) FROM processed_events WHERE event_id = $1 AND topic = $2", eventID, b.topic); n != 1 {
		t.Errorf("inbox rows = %d", n)
	}

	// The offset is committed after the transaction.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.broker.Addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	testenv.WaitFor(t, 10*time.Second, "committed offset 1", func() bool {
		offs, err := adm.FetchOffsets(context.Background(), r.Group())
		if err != nil {
			return false
		}
		o, ok := offs.Lookup(b.topic, msg.Partition)
		return ok && o.At == 1
	})
	// And the lag gauge reads 0 for that partition.
	testenv.WaitFor(t, 10*time.Second, "lag 0", func() bool {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() != "orderflow_consumer_lag" {
				continue
			}
			for _, m := range mf.GetMetric() {
				var topic, part string
				for _, lp := range m.GetLabel() {
					switch lp.GetName() {
					case "topic":
						topic = lp.GetValue()
					case "partition":
						part = lp.GetValue()
					}
				}
				if topic == b.topic && part == strconv.Itoa(int(msg.Partition)) {
					return m.GetGauge().GetValue() == 0
				}
			}
		}
		return false
	})
}

func TestDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, reg := b.newRunner(t, applyEffect(""), nil)
	start(t, r)
	orderID := uuid.NewString()
	value, _ := placed(t, orderID, 1)
	rec := b.record(orderID, value)
	b.produce(t, rec)
	b.produce(t, b.record(orderID, value)) // verbatim again

	testenv.WaitFor(t, 20*time.Second, "one ok and one duplicate", func() bool {
		return handled(t, reg, b.topic, "ok") == 1 && handled(t, reg, b.topic, "duplicate") == 1
	})
	if n := b.effects(t); n != 1 {
		t.Fatalf("effects = %d, want 1", n)
	}
}

// Malformed records go to the DLQ at once, unknown events from a newer
// producer are skipped, and the partition goes on.
func TestPoisonRecords(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var calls atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
		calls.Add(1)
		return applyEffect("")(ctx, tx, msg)
	}
	r, reg := b.newRunner(t, h, nil)
	start(t, r)

	orderID := uuid.NewString() // one key: one partition
	envelope := func(event string, version int, extra string) []byte {
		return fmt.Appendf(nil, `{"event":%q,"version":%d,"eventId":%q,"orderId":%q,"occurredAt":"2026-01-01T00:00:00Z"%s}`,
			event, version, uuid.NewString(), orderID, extra)
	}
	poison := []struct {
		name, value, wantErr string
	}{
		{"not JSON", "not json at all", "malformed envelope"},
		{"schema-invalid", string(envelope("OrderPlaced", 1, `,"customerId":"c-1"`)), "OrderPlaced"},
		{"no eventId", fmt.Sprintf(`{"event":"OrderPlaced","version":1,"orderId":%q}`, orderID), "eventId"},
		{"eventId not a UUID", fmt.Sprintf(`{"event":"OrderPlaced","version":1,"eventId":"x","orderId":%q}`, orderID), "eventId"},
		// A handled event at a version this build cannot read: not skipped
		// (its effect would be lost without a trace) but kept for a replay
		// after the upgrade.
		{"unknown version of a handled event", string(envelope("OrderPlaced", 2, `,"whatever":true`)), "OrderPlaced version 2 is unknown"},
	}
	var recs []*kgo.Record
	for _, p := range poison {
		recs = append(recs, b.record(orderID, []byte(p.value)))
	}
	// A valid envelope of an event this build does not know: skipped.
	recs = append(recs, b.record(orderID, envelope("OrderTeleported", 1, "")))
	valid, _ := placed(t, orderID, 1)
	recs = append(recs, b.record(orderID, valid))
	b.produce(t, recs...)

	testenv.WaitFor(t, 20*time.Second, "the valid record after the poison", func() bool { return b.effects(t) == 1 })
	dead := b.deadLetters(t, len(poison))
	for i, p := range poison {
		t.Run(p.name, func(t *testing.T) {
			d := dead[i]
			if string(d.Value) != p.value || string(d.Key) != orderID || header(d, "x-correlation-id") != "corr-"+orderID {
				t.Errorf("dead letter not the record unchanged: key %q value %q", d.Key, d.Value)
			}
			want := map[string]string{
				"x-dlq-topic": b.topic, "x-dlq-partition": strconv.Itoa(int(recs[i].Partition)),
				"x-dlq-offset": strconv.FormatInt(recs[i].Offset, 10), "x-dlq-attempts": "0",
			}
			for k, v := range want {
				if got := header(d, k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if got := header(d, "x-dlq-error"); !strings.Contains(got, p.wantErr) {
				t.Errorf("x-dlq-error = %q, want it to mention %q", got, p.wantErr)
			}
		})
	}
	if calls.Load() != 1 {
		t.Errorf("handler called %d times, want 1", calls.Load())
	}
	if got := handled(t, reg, b.topic, "skipped"); got != 1 {
		t.Errorf("skipped = %d, want 1", got)
	}
	if got := handled(t, reg, b.topic, "dead"); got != len(poison) {
		t.Errorf("dead = %d, want %d", got, len(poison))
	}
}

func TestRetryThenSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var attempts atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
		if err := applyEffect("")(ctx, tx, msg); err != nil {
			return err
		}
		if attempts.Add(1) <= 2 {
			return errors.New("gateway flaked") // the effect above rolls back
		}
		return nil
	}
	r, reg := b.newRunner(t, h, nil)
	start(t, r)
	orderID := uuid.NewString()
	value, _ := placed(t, orderID, 1)
	b.produce(t, b.record(orderID, value))

	testenv.WaitFor(t, 20*time.Second, "ok after retries", func() bool { return handled(t, reg, b.topic, "ok") == 1 })
	if n := b.effects(t); n != 1 {
		t.Errorf("effects = %d, want 1", n)
	}
	if got := handled(t, reg, b.topic, "retry"); got != 2 {
		t.Errorf("retry = %d, want 2", got)
	}
	if attempts.Load() != 3 {
		t.Errorf("attempts = %d, want 3", attempts.Load())
	}
}

// A record whose handler keeps failing is dead-lettered after MaxAttempts,
// and the next record of its partition is handled.
func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orderID := uuid.NewString()
	bad, badID := placed(t, orderID, 1)
	good, _ := placed(t, orderID, 2)
	var badAttempts atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
		if err := applyEffect("")(ctx, tx, msg); err != nil {
			return err
		}
		if msg.Envelope.EventID == badID {
			badAttempts.Add(1)
			return errors.New("always broken")
		}
		return nil
	}
	r, reg := b.newRunner(t, h, func(c *consumer.Config) { c.MaxAttempts = 3 })
	start(t, r)
	b.produce(t, b.record(orderID, bad), b.record(orderID, good))

	testenv.WaitFor(t, 20*time.Second, "the next record handled", func() bool { return handled(t, reg, b.topic, "ok") == 1 })
	dead := b.deadLetters(t, 1)
	if got := header(dead[0], "x-dlq-attempts"); got != "3" {
		t.Errorf("x-dlq-attempts = %q, want 3", got)
	}
	if got := header(dead[0], "x-dlq-error"); !strings.Contains(got, "always broken") {
		t.Errorf("x-dlq-error = %q", got)
	}
	if string(dead[0].Value) != string(bad) {
		t.Error("dead letter is not the record unchanged")
	}
	if badAttempts.Load() != 3 || handled(t, reg, b.topic, "retry") != 2 || handled(t, reg, b.topic, "dead") != 1 {
		t.Errorf("attempts %d, retry %d, dead %d; want 3, 2, 1", badAttempts.Load(),
			handled(t, reg, b.topic, "retry"), handled(t, reg, b.topic, "dead"))
	}
	if n := b.count(t, "SELECT count(*) FROM effects WHERE seq = 1"); n != 0 {
		t.Errorf("the failed record left %d effects", n)
	}
	if n := b.count(t, "SELECT count(*) FROM processed_events"); n != 1 {
		t.Errorf("inbox rows = %d, want 1 (the dead record's claims rolled back)", n)
	}
}

// A consumer that dies after its transaction committed and before the
// offset commit gets the record again on restart; the inbox makes it a
// duplicate.
func TestCrashAfterCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orderID := uuid.NewString()
	value, _ := placed(t, orderID, 1)

	r1, reg1 := b.newRunner(t, applyEffect("first"), nil)
	consumer.SetAfterCommit(r1, func(consumer.Message) bool { return true })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r1.Run(ctx) }()
	b.produce(t, b.record(orderID, value))
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil after the simulated crash")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the first runner did not crash")
	}
	if n := b.effects(t); n != 1 {
		t.Fatalf("effects after the crash = %d, want 1", n)
	}
	if got := handled(t, reg1, b.topic, "ok"); got != 0 {
		t.Errorf("crashed runner counted ok = %d", got)
	}

	r2, reg2 := b.newRunner(t, applyEffect("second"), nil)
	start(t, r2)
	testenv.WaitFor(t, 30*time.Second, "the redelivery as a duplicate", func() bool {
		return handled(t, reg2, b.topic, "duplicate") == 1
	})
	if n := b.effects(t); n != 1 {
		t.Errorf("effects = %d, want 1", n)
	}
	if got := handled(t, reg2, b.topic, "ok"); got != 0 {
		t.Errorf("second runner applied %d events again", got)
	}
}

// Two members of one group split the partitions; every record's effect
// happens once, and each key's records in the order produced.
func TestTwoRunners(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const keys, perKey = 20, 25
	orderIDs := make([]string, keys)
	for i := range orderIDs {
		orderIDs[i] = uuid.NewString()
	}
	batch := func(from, to int) []*kgo.Record {
		var recs []*kgo.Record
		for seq := from; seq < to; seq++ {
			for _, id := range orderIDs {
				v, _ := placed(t, id, seq)
				recs = append(recs, b.record(id, v))
			}
		}
		return recs
	}
	ra, _ := b.newRunner(t, applyEffect("a"), nil)
	rb, _ := b.newRunner(t, applyEffect("b"), nil)
	runA := start(t, ra)
	b.produce(t, batch(0, 10)...)
	start(t, rb) // joins while records flow: a cooperative rebalance
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := 10; seq < 15; seq++ {
			b.produce(t, batch(seq, seq+1)...)
		}
	}()
	b.waitMembers(t, ra.Group(), 2)
	wg.Wait()
	b.produce(t, batch(15, 20)...)
	testenv.WaitFor(t, 60*time.Second, "the second member at work", func() bool {
		return b.count(t, "SELECT count(*) FROM effects WHERE runner = 'b'") > 0
	})
	// The first member leaves mid-flow: its partitions move to the second,
	// after it committed what it finished.
	runA.Halt(t)
	b.produce(t, batch(20, perKey)...)

	testenv.WaitFor(t, 60*time.Second, "every effect", func() bool { return b.effects(t) >= keys*perKey })
	if n := b.effects(t); n != keys*perKey {
		t.Fatalf("effects = %d, want %d", n, keys*perKey)
	}
	if n := b.count(t, "SELECT count(DISTINCT event_id) FROM effects"); n != keys*perKey {
		t.Errorf("distinct events = %d, want %d", n, keys*perKey)
	}
	// Per key, effects in commit order carry seq 0, 1, 2, ...
	rows, err := b.pool.Query(context.Background(), "SELECT order_id, seq FROM effects ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int{}
	for rows.Next() {
		var id string
		var seq int
		if err := rows.Scan(&id, &seq); err != nil {
			t.Fatal(err)
		}
		if seq != next[id] {
			t.Errorf("order %s: seq %d applied when %d was due", id, seq, next[id])
		}
		next[id] = seq + 1
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// Shutdown finishes the record in hand and commits its offset: a new
// runner of the group gets nothing again.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entered, release := make(chan struct{}), make(chan struct{})
	h := func(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
		close(entered)
		<-release
		return applyEffect("first")(ctx, tx, msg)
	}
	r1, reg1 := b.newRunner(t, h, nil)
	rr := start(t, r1)
	orderID := uuid.NewString()
	value, _ := placed(t, orderID, 1)
	b.produce(t, b.record(orderID, value))
	<-entered
	rr.Stop() // shutdown while the handler runs
	select {
	case <-rr.Done():
		t.Fatal("Run returned before the record in hand was finished")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	rr.Halt(t)
	if n := b.effects(t); n != 1 || handled(t, reg1, b.topic, "ok") != 1 {
		t.Fatalf("effects = %d, ok = %d; want 1, 1", n, handled(t, reg1, b.topic, "ok"))
	}

	// A second runner gets the next record only: the first was committed.
	r2, reg2 := b.newRunner(t, applyEffect("second"), nil)
	start(t, r2)
	next, _ := placed(t, orderID, 2)
	b.produce(t, b.record(orderID, next))
	testenv.WaitFor(t, 30*time.Second, "the next record", func() bool { return handled(t, reg2, b.topic, "ok") == 1 })
	if got := handled(t, reg2, b.topic, "duplicate"); got != 0 {
		t.Errorf("second runner saw %d duplicates; the first did not commit its offset", got)
	}
}

// A record waiting for its next retry does not hold up shutdown: the
// backoff is interrupted and the record left to the next owner.
func TestShutdownInterruptsBackoff(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := func(context.Context, pgx.Tx, consumer.Message) error { return errors.New("down") }
	r, reg := b.newRunner(t, h, func(c *consumer.Config) {
		c.BaseBackoff, c.MaxRetryTime, c.MaxAttempts = time.Hour, 10*time.Hour, 10
	})
	rr := start(t, r)
	orderID := uuid.NewString()
	value, _ := placed(t, orderID, 1)
	b.produce(t, b.record(orderID, value))
	testenv.WaitFor(t, 20*time.Second, "a retry", func() bool { return handled(t, reg, b.topic, "retry") == 1 })
	rr.Halt(t) // fails the test unless Run stops well before the hour
	if got := handled(t, reg, b.topic, "dead"); got != 0 {
		t.Errorf("dead = %d, want 0", got)
	}
}

// A Handler error wrapping ErrPermanent dead-letters the record at once.
func TestPermanentError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := func(context.Context, pgx.Tx, consumer.Message) error {
		return fmt.Errorf("order unknown: %w", consumer.ErrPermanent)
	}
	r, reg := b.newRunner(t, h, nil)
	start(t, r)
	orderID := uuid.NewString()
	value, _ := placed(t, orderID, 1)
	b.produce(t, b.record(orderID, value))
	dead := b.deadLetters(t, 1)
	if got := header(dead[0], "x-dlq-attempts"); got != "1" {
		t.Errorf("x-dlq-attempts = %q, want 1", got)
	}
	if got := handled(t, reg, b.topic, "retry"); got != 0 {
		t.Errorf("retry = %d, want 0", got)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	valid := consumer.Config{
		Service: "payments", Brokers: []string{"localhost:9092"}, Topics: []string{"orders"},
		Handler: func(context.Context, pgx.Tx, consumer.Message) error { return nil }, Pool: &pgxpool.Pool{},
	}
	tests := []struct {
		name  string
		mod   func(*consumer.Config)
		field string
	}{
		{"no service", func(c *consumer.Config) { c.Service = "" }, "Service"},
		{"no brokers", func(c *consumer.Config) { c.Brokers = nil }, "Brokers"},
		{"no topics", func(c *consumer.Config) { c.Topics = nil }, "Topics"},
		{"no handler", func(c *consumer.Config) { c.Handler = nil }, "Handler"},
		{"no pool", func(c *consumer.Config) { c.Pool = nil }, "Pool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.mod(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
	if err := valid.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestInboxPruned(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.pool.Exec(context.Background(), `INSERT INTO processed_events (event_id, topic, partition, "offset", processed_at)
		VALUES (gen_random_uuid(), 'orders', 0, 0, now() - interval '1 hour')`)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := b.newRunner(t, applyEffect(""), func(c *consumer.Config) { c.InboxRetention = time.Minute })
	start(t, r)
	orderID := uuid.NewString()
	value, _ := placed(t, orderID, 1)
	b.produce(t, b.record(orderID, value))
	testenv.WaitFor(t, 30*time.Second, "the old row pruned", func() bool {
		return b.count(t, "SELECT count(*) FROM processed_events WHERE processed_at < now() - interval '30 minutes'") == 0
	})
	if n := b.count(t, "SELECT count(*) FROM processed_events"); n != 1 {
		t.Errorf("inbox rows = %d, want 1 (the fresh one)", n)
	}
}

// A backlog is handled in batches (one transaction for many records), with
// a record whose handler fails once and a poison record in the middle: every
// effect exactly once, in per-key order, the failing record's batch failure
// counted as its first attempt, the poison record dead-lettered.
func TestBatches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const keys, perKey = 10, 30
	var recs []*kgo.Record
	var flakyID string
	for seq := range perKey {
		for k := range keys {
			orderID := fmt.Sprintf("00000000-0000-4000-8000-%012d", k)
			value, id := placed(t, orderID, seq)
			if k == 3 && seq == 10 {
				flakyID = id
			}
			recs = append(recs, b.record(orderID, value))
			if k == 5 && seq == 20 {
				recs = append(recs, b.record(orderID, []byte("not json")))
			}
		}
	}
	b.produce(t, recs...) // all queued before the runner starts: batches form

	var failedOnce atomic.Bool
	h := func(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
		if msg.Envelope.EventID == flakyID && failedOnce.CompareAndSwap(false, true) {
			return errors.New("transient")
		}
		// The transaction id shows which records shared a transaction.
		var seq struct {
			Seq int `json:"seq"`
		}
		_ = json.Unmarshal(msg.Value, &seq)
		_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, order_id, seq, runner)
			VALUES ($1, $2, $3, pg_current_xact_id()::text)`, msg.Envelope.EventID, msg.Envelope.OrderID, seq.Seq)
		return err
	}
	r, reg := b.newRunner(t, h, nil)
	start(t, r)

	total := keys * perKey
	testenv.WaitFor(t, 60*time.Second, "every effect", func() bool { return b.effects(t) == total })
	if n := b.count(t, "SELECT count(DISTINCT event_id) FROM effects"); n != total {
		t.Errorf("%d distinct effects of %d", n, total)
	}
	if n := b.count(t, "SELECT count(DISTINCT runner) FROM effects"); n >= total/2 {
		t.Errorf("%d transactions for %d records: not batched", n, total)
	}
	// Per key, effects were applied in seq order.
	if n := b.count(t, `SELECT count(*) FROM (
		SELECT seq < lag(seq) OVER (PARTITION BY order_id ORDER BY id) AS back FROM effects) x WHERE back`); n != 0 {
		t.Errorf("%d effects out of per-key order", n)
	}
	b.deadLetters(t, 1)
	testenv.WaitFor(t, 10*time.Second, "counts", func() bool {
		return handled(t, reg, b.topic, "ok") == total && handled(t, reg, b.topic, "retry") == 1 &&
			handled(t, reg, b.topic, "dead") == 1
	})
}

// Records of many partitions, a record or two each, share transactions:
// the batches the partitions have ready at the same moment are joined into
// one, so a steady load spread over the partitions does not cost a
// transaction per record.
func TestJointBatches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const orders = 60
	var recs []*kgo.Record
	for k := range orders {
		orderID := fmt.Sprintf("00000000-0000-4000-8000-%012d", k)
		value, _ := placed(t, orderID, 0)
		recs = append(recs, b.record(orderID, value))
	}
	b.produce(t, recs...)
	h := func(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
		// seq holds the partition here: which partitions shared a transaction.
		_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, order_id, seq, runner)
			VALUES ($1, $2, $3, pg_current_xact_id()::text)`, msg.Envelope.EventID, msg.Envelope.OrderID, msg.Partition)
		return err
	}
	r, _ := b.newRunner(t, h, nil)
	start(t, r)
	testenv.WaitFor(t, 60*time.Second, "every effect", func() bool { return b.effects(t) == orders })
	if n := b.count(t, "SELECT count(DISTINCT seq) FROM effects"); n < 2 {
		t.Fatalf("the records landed in %d partition(s); the test needs several", n)
	}
	joined := b.count(t, "SELECT count(*) FROM (SELECT runner FROM effects GROUP BY runner HAVING count(DISTINCT seq) > 1) x")
	if joined == 0 {
		t.Errorf("no transaction held records of two partitions: batches are not joined")
	}
	if n := b.count(t, "SELECT count(DISTINCT runner) FROM effects"); n > orders/3 {
		t.Errorf("%d transactions for %d records of %d partitions", n, orders, b.count(t, "SELECT count(DISTINCT seq) FROM effects"))
	}
}

// A Handler that cannot run a record behind others in its batch returns
// ErrBatchConflict: the records before it commit, it starts the next
// batch, and nothing counts as a failure.
func TestBatchConflict(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var recs []*kgo.Record
	for seq := range 200 {
		orderID := fmt.Sprintf("00000000-0000-4000-8000-%012d", seq%7)
		value, _ := placed(t, orderID, seq)
		recs = append(recs, b.record(orderID, value))
	}
	b.produce(t, recs...)

	var conflicts atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
		// Every fifth record must be its transaction's first.
		var seq struct {
			Seq int `json:"seq"`
		}
		_ = json.Unmarshal(msg.Value, &seq)
		var first bool
		if err := tx.QueryRow(ctx, "SELECT coalesce(current_setting('test.busy', true), '') = ''").Scan(&first); err != nil {
			return err
		}
		if seq.Seq%5 == 0 && !first {
			conflicts.Add(1)
			return fmt.Errorf("seq %d: %w", seq.Seq, consumer.ErrBatchConflict)
		}
		if _, err := tx.Exec(ctx, "SELECT set_config('test.busy', 'yes', true)"); err != nil {
			return err
		}
		return applyEffect("")(ctx, tx, msg)
	}
	r, reg := b.newRunner(t, h, nil)
	start(t, r)
	testenv.WaitFor(t, 60*time.Second, "every effect", func() bool { return b.effects(t) == len(recs) })
	if conflicts.Load() == 0 {
		t.Error("no batch conflict happened: the test proves nothing")
	}
	testenv.WaitFor(t, 10*time.Second, "ok counted", func() bool { return handled(t, reg, b.topic, "ok") == len(recs) })
	if n, d := handled(t, reg, b.topic, "retry"), handled(t, reg, b.topic, "dead"); n != 0 || d != 0 {
		t.Errorf("retry %d, dead %d; want 0, 0", n, d)
	}
	if n := b.count(t, `SELECT count(*) FROM (
		SELECT seq < lag(seq) OVER (PARTITION BY order_id ORDER BY id) AS back FROM effects) x WHERE back`); n != 0 {
		t.Errorf("%d effects out of per-key order", n)
	}
}

// Batches carrying events the service does not handle (Config.Events) and
// verbatim duplicates: the ignored records cost no inbox row, no schema
// check and no Handler call, and a duplicate inside one batch is applied
// once.
func TestBatchIgnoredAndDuplicates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const keys, perKey = 10, 20
	var recs []*kgo.Record
	placedN, dupN, ignoredN := 0, 0, 0
	for seq := range perKey {
		for k := range keys {
			orderID := fmt.Sprintf("00000000-0000-4000-8000-%012d", k)
			value, _ := placed(t, orderID, seq)
			recs = append(recs, b.record(orderID, value))
			placedN++
			if seq%4 == 1 {
				recs = append(recs, b.record(orderID, value)) // the same record again
				dupN++
			}
			if seq%5 == 2 {
				c := fmt.Sprintf(`{"event":"OrderCancelled","version":1,"eventId":%q,"orderId":%q,"reason":"x","occurredAt":"2026-01-01T00:00:00Z"}`,
					uuid.NewString(), orderID)
				if k == 0 {
					c = fmt.Sprintf(`{"event":"OrderCancelled","version":1,"eventId":%q,"orderId":%q}`, uuid.NewString(), orderID) // fails its schema
				}
				recs = append(recs, b.record(orderID, []byte(c)))
				ignoredN++
			}
		}
	}
	b.produce(t, recs...) // all queued before the runner starts: batches form

	h := func(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
		var seq struct {
			Seq int `json:"seq"`
		}
		_ = json.Unmarshal(msg.Value, &seq)
		_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, order_id, seq, runner)
			VALUES ($1, $2, $3, pg_current_xact_id()::text)`, msg.Envelope.EventID, msg.Envelope.OrderID, seq.Seq)
		return err
	}
	r, reg := b.newRunner(t, h, func(c *consumer.Config) {
		c.Events = []string{"OrderPlaced"}
	})
	start(t, r)

	defer func() {
		if t.Failed() {
			t.Logf("ok %d/%d, duplicate %d/%d, ignored %d/%d, retry %d, dead %d", handled(t, reg, b.topic, "ok"), placedN,
				handled(t, reg, b.topic, "duplicate"), dupN, handled(t, reg, b.topic, "ignored"), ignoredN,
				handled(t, reg, b.topic, "retry"), handled(t, reg, b.topic, "dead"))
		}
	}()
	testenv.WaitFor(t, 60*time.Second, "every record counted", func() bool {
		return handled(t, reg, b.topic, "ok") == placedN && handled(t, reg, b.topic, "duplicate") == dupN &&
			handled(t, reg, b.topic, "ignored") == ignoredN
	})
	if n := b.effects(t); n != placedN {
		t.Errorf("%d effects, want %d", n, placedN)
	}
	if n := b.count(t, "SELECT count(*) FROM processed_events"); n != placedN {
		t.Errorf("%d inbox rows, want %d: ignored records left rows", n, placedN)
	}
	if n := b.count(t, "SELECT count(DISTINCT runner) FROM effects"); n >= placedN/2 {
		t.Errorf("%d transactions for %d effects: no batch formed", n, placedN)
	}
	if n := b.count(t, `SELECT count(*) FROM (
		SELECT seq < lag(seq) OVER (PARTITION BY order_id ORDER BY id) AS back FROM effects) x WHERE back`); n != 0 {
		t.Errorf("%d effects out of per-key order", n)
	}
	if d := handled(t, reg, b.topic, "dead"); d != 0 {
		t.Errorf("%d dead letters: an ignored event's schema was checked", d)
	}

	// Alone (nothing queued behind it), an ignored record is passed over too.
	orderID := uuid.NewString()
	b.produce(t, b.record(orderID, []byte(fmt.Sprintf(`{"event":"PaymentFailed","version":1,"eventId":%q,"orderId":%q}`, uuid.NewString(), orderID))))
	testenv.WaitFor(t, 20*time.Second, "the lone record ignored", func() bool {
		return handled(t, reg, b.topic, "ignored") == ignoredN+1
	})
}

// A BatchHandler gets each batch's fresh records at once and applies them
// in one statement. A RecordError commits the records before the one it
// names and retries that one alone, counting one failed attempt; a plain
// error sends the batch's records through one by one, counting nothing;
// each message's Context carries its own correlation id.
func TestBatchHandler(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const keys, perKey = 10, 30
	var recs []*kgo.Record
	var flakyID, plainID string
	for seq := range perKey {
		for k := range keys {
			orderID := fmt.Sprintf("00000000-0000-4000-8000-%012d", k)
			value, id := placed(t, orderID, seq)
			switch {
			case k == 3 && seq == 10:
				flakyID = id
			case k == 6 && seq == 20:
				plainID = id
			}
			recs = append(recs, b.record(orderID, value))
		}
	}
	b.produce(t, recs...) // all queued before the runner starts: batches form

	var flakyFailed, plainFailed, wrongCorrelation atomic.Bool
	var batches, biggest atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, msgs []consumer.Message) error {
		batches.Add(1)
		if n := int32(len(msgs)); n > biggest.Load() {
			biggest.Store(n)
		}
		var ids, orders []string
		var seqs []int
		for i, msg := range msgs {
			if correlation.ID(msg.Context(ctx)) != "corr-"+msg.Key {
				wrongCorrelation.Store(true)
			}
			switch {
			case msg.Envelope.EventID == flakyID && flakyFailed.CompareAndSwap(false, true):
				return &consumer.RecordError{Index: i, Err: errors.New("transient")}
			case msg.Envelope.EventID == plainID && len(msgs) > 1 && plainFailed.CompareAndSwap(false, true):
				return errors.New("somewhere in the batch")
			}
			var seq struct {
				Seq int `json:"seq"`
			}
			_ = json.Unmarshal(msg.Value, &seq)
			ids, orders, seqs = append(ids, msg.Envelope.EventID), append(orders, msg.Envelope.OrderID), append(seqs, seq.Seq)
		}
		_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, order_id, seq, runner)
			SELECT unnest($1::uuid[]), unnest($2::text[]), unnest($3::int[]), pg_current_xact_id()::text`, ids, orders, seqs)
		return err
	}
	r, reg := b.newRunner(t, nil, func(c *consumer.Config) { c.Batch = h })
	start(t, r)

	total := keys * perKey
	testenv.WaitFor(t, 60*time.Second, "every effect", func() bool { return b.effects(t) == total })
	if n := b.count(t, "SELECT count(DISTINCT event_id) FROM effects"); n != total {
		t.Errorf("%d distinct effects of %d", n, total)
	}
	if n := b.count(t, "SELECT count(DISTINCT runner) FROM effects"); n >= total/2 || biggest.Load() < 2 {
		t.Errorf("%d transactions for %d records, biggest batch %d: not batched", n, total, biggest.Load())
	}
	if n := b.count(t, `SELECT count(*) FROM (
		SELECT seq < lag(seq) OVER (PARTITION BY order_id ORDER BY id) AS back FROM effects) x WHERE back`); n != 0 {
		t.Errorf("%d effects out of per-key order", n)
	}
	if !flakyFailed.Load() || !plainFailed.Load() {
		t.Errorf("flaky failed %v, plain failed %v: the test proves less than it says", flakyFailed.Load(), plainFailed.Load())
	}
	if wrongCorrelation.Load() {
		t.Error("a message's Context did not carry its correlation id")
	}
	testenv.WaitFor(t, 10*time.Second, "counts", func() bool {
		return handled(t, reg, b.topic, "ok") == total && handled(t, reg, b.topic, "retry") == 1
	})
	if d := handled(t, reg, b.topic, "dead"); d != 0 {
		t.Errorf("%d dead; want 0", d)
	}
}
