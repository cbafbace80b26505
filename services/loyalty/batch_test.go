package loyalty

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/timer"
	"github.com/orderflow/orderflow/pkg/service"
)

// newHandler is a handler with the given award delay on a fresh, migrated
// database, without consumer or timer worker: the tests call it as they do.
func newHandler(t testing.TB, awardDelay time.Duration) (*handler, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.NewPool(t)
	if err := service.Migrate(context.Background(), pool, serviceName, service.Sub(migrations, "migrations")); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	return &handler{outbox: outbox.New(pool, outbox.Config{Service: serviceName}, log), awardDelay: awardDelay, log: log}, pool
}

// message is ev, its envelope completed, as the consumer hands it to the
// handler.
func message(t testing.TB, ev contract.Event) consumer.Message {
	m := ev.Meta()
	m.Event, m.Version, m.OccurredAt = ev.Name(), 1, time.Now().UTC()
	if m.EventID == "" {
		m.EventID = newID()
	}
	value, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return consumer.Message{Key: m.OrderID, Value: value, Envelope: *m, CorrelationID: "test-" + m.OrderID}
}

// again is ev's message under a new eventId: the same event sent twice.
func again(t testing.TB, ev contract.Event) consumer.Message {
	ev.Meta().EventID = ""
	return message(t, ev)
}

// apply runs h.handleBatch on msgs in one transaction, as the runner
// does, and commits unless it fails.
func apply(t testing.TB, h *handler, pool *pgxpool.Pool, msgs []consumer.Message) error {
	t.Helper()
	keys := make([]string, len(msgs))
	for i, m := range msgs {
		keys[i] = m.Key
	}
	return inTx(t, pool, keys, func(ctx context.Context, tx pgx.Tx) error { return h.handleBatch(ctx, tx, msgs) })
}

// inTx runs f in a transaction, keys locked first (sorted, as the runner
// and the timer worker lock them), and commits unless f fails.
func inTx(t testing.TB, pool *pgxpool.Pool, keys []string, f func(ctx context.Context, tx pgx.Tx) error) error {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := outbox.LockKeys(ctx, tx, slices.Sorted(slices.Values(keys))); err != nil {
		t.Fatal(err)
	}
	if err := f(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return nil
}

// asBatch applies msgs as the runner does a batch: all in one
// transaction; on a RecordError the records before the one named again,
// then that one alone (dead-lettered when it fails permanently), then the
// rest as the next batch. It returns the eventIds dead-lettered.
func asBatch(t *testing.T, h *handler, pool *pgxpool.Pool, msgs []consumer.Message) (dead []string) {
	t.Helper()
	for len(msgs) > 0 {
		err := apply(t, h, pool, msgs)
		if err == nil {
			return dead
		}
		re, ok := errors.AsType[*consumer.RecordError](err)
		if !ok {
			t.Fatalf("batch: %v, want nil or a RecordError", err)
		}
		if re.Index > 0 {
			if err := apply(t, h, pool, msgs[:re.Index]); err != nil {
				t.Fatalf("the records before %d: %v", re.Index, err)
			}
		}
		dead = append(dead, alone(t, h, pool, msgs[re.Index])...)
		msgs = msgs[re.Index+1:]
	}
	return dead
}

// oneByOne applies each of msgs in a transaction of its own and returns
// the eventIds dead-lettered.
func oneByOne(t *testing.T, h *handler, pool *pgxpool.Pool, msgs []consumer.Message) (dead []string) {
	t.Helper()
	for _, msg := range msgs {
		dead = append(dead, alone(t, h, pool, msg)...)
	}
	return dead
}

// alone applies msg on its own: its eventId when it fails permanently.
func alone(t *testing.T, h *handler, pool *pgxpool.Pool, msg consumer.Message) []string {
	t.Helper()
	err := apply(t, h, pool, []consumer.Message{msg})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, consumer.ErrPermanent):
		return []string{msg.Envelope.EventID}
	}
	t.Fatalf("%s of %s alone: %v", msg.Envelope.Event, msg.Key, err)
	return nil
}

// dump is the service's state in pool, without what differs between two
// runs of the same events (times, eventIds): awards, cancellations, award
// timers and PointsAwarded.
func dump(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT * FROM (SELECT format('award %s %s %s %s due=%s awarded=%s %s', order_id, customer_id, points, state,
			due_at IS NOT NULL, awarded_at IS NOT NULL, reason) FROM awards ORDER BY order_id) a
		UNION ALL SELECT * FROM (SELECT format('cancellation %s %s', order_id, reason) FROM cancellations ORDER BY order_id) c
		UNION ALL SELECT * FROM (SELECT format('timer %s %s %s %s', kind, key, state, convert_from(payload, 'UTF8'))
			FROM timers ORDER BY key) t
		UNION ALL SELECT * FROM (SELECT format('outbox %s %s %s %s %s %s', topic, key, event_type,
			payload::jsonb->>'customerId', payload::jsonb->>'points', correlation_id) FROM outbox ORDER BY id) o`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// stateOf is the award's state of orderID and its timer's in pool, "none"
// for either missing.
func stateOf(t *testing.T, pool *pgxpool.Pool, orderID string) (award, tmr string) {
	t.Helper()
	err := pool.QueryRow(context.Background(), `SELECT coalesce((SELECT state FROM awards WHERE order_id = $1), 'none'),
		coalesce((SELECT state FROM timers WHERE kind = $2 AND key = $1::text), 'none')`, orderID, timerAward).Scan(&award, &tmr)
	if err != nil {
		t.Fatal(err)
	}
	return award, tmr
}

// fire fires the award timers of orderIDs as one batch, in one
// transaction, their keys locked first as the worker does, and marks them
// fired.
func fire(t *testing.T, h *handler, pool *pgxpool.Pool, orderIDs ...string) {
	t.Helper()
	err := inTx(t, pool, orderIDs, func(ctx context.Context, tx pgx.Tx) error {
		timers := make([]timer.Timer, len(orderIDs))
		for i, id := range orderIDs {
			var err error
			if timers[i], err = timer.Get(ctx, tx, timerAward, id); err != nil {
				return err
			}
		}
		if err := h.fireAwards(ctx, tx, timers); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE timers SET state = 'fired', done_at = now() WHERE kind = $1 AND key = ANY($2)",
			timerAward, orderIDs)
		return err
	})
	if err != nil {
		t.Fatalf("fire %d award timers: %v", len(orderIDs), err)
	}
}

// TestBatchEqualsOneByOne applies one batch of records, many of the same
// orders, on top of orders in every state, and the same records one by one
// on a second database with the same history: the awards, cancellations
// and timers end the same, the same poison record is dead-lettered, and
// each order ends as its rules say.
func TestBatchEqualsOneByOne(t *testing.T) {
	t.Parallel()
	cust := newCustomer()
	var o [14]string
	for i := range o {
		o[i] = newID()
	}
	// History: o6, o10 and o12 pending, o7 awarded, o8 cancelled; o12's
	// award row deleted by hand, its timer left.
	history := func(t *testing.T, later *handler, pool *pgxpool.Pool) {
		msgs := []consumer.Message{
			message(t, captured(o[6], cust, 600)), message(t, captured(o[7], cust, 700)),
			message(t, cancelled(o[8])), message(t, captured(o[10], cust, 1000)), message(t, captured(o[12], cust, 1200)),
		}
		if err := apply(t, later, pool, msgs); err != nil {
			t.Fatal(err)
		}
		fire(t, later, pool, o[7])
		if _, err := pool.Exec(context.Background(), "DELETE FROM awards WHERE order_id = $1", o[12]); err != nil {
			t.Fatal(err)
		}
	}
	poison := captured(o[11], "cust\x00", 1100)
	o2, o9 := captured(o[2], cust, 250), captured(o[9], cust, 900)
	var msgs []consumer.Message
	for _, ev := range []contract.Event{
		captured(o[1], cust, 12_345), o2, captured(o[3], cust, 300), cancelled(o[4]),
		refunded(o[3], cust, 300), captured(o[4], cust, 400), poison, captured(o[5], cust, 99),
		cancelled(o[6]), refunded(o[7], cust, 700), captured(o[8], cust, 800), o9, refunded(o[9], cust, 900),
		captured(o[10], cust, 1000), cancelled(o[5]), refunded(o[6], cust, 600), captured(o[12], cust, 1200),
		captured(o[13], cust, 1300),
	} {
		msgs = append(msgs, message(t, ev))
	}
	// The same orders captured again under new eventIds, o9's after its refund.
	msgs = slices.Insert(msgs, 4, again(t, o2))
	msgs = slices.Insert(msgs, 14, again(t, o9))

	batch, batchPool := newHandler(t, time.Hour)
	each, eachPool := newHandler(t, time.Hour)
	history(t, batch, batchPool)
	history(t, each, eachPool)
	deadBatch := asBatch(t, batch, batchPool, msgs)
	deadEach := oneByOne(t, each, eachPool, msgs)

	want := []string{poison.EventID}
	if !slices.Equal(deadBatch, want) || !slices.Equal(deadEach, want) {
		t.Errorf("dead-lettered %v as a batch, %v one by one; want the poison %v", deadBatch, deadEach, want)
	}
	got, ref := dump(t, batchPool), dump(t, eachPool)
	if !slices.Equal(got, ref) {
		t.Errorf("as a batch:\n%s\none by one:\n%s", strings.Join(got, "\n"), strings.Join(ref, "\n"))
	}
	for _, c := range []struct {
		order        int
		award, timer string
	}{
		{1, statePending, timer.StatePending},
		{2, statePending, timer.StatePending},   // captured twice: once
		{3, stateDropped, timer.StateCancelled}, // refunded after its capture in the batch
		{4, stateDropped, "none"},               // cancelled before its capture
		{5, "none", "none"},                     // worth no points
		{6, stateDropped, timer.StateCancelled}, // pending before the batch
		{7, stateAwarded, timer.StateFired},     // given before its refund: kept
		{8, stateDropped, "none"},               // cancelled before the batch
		{9, stateDropped, timer.StateCancelled}, // captured again after its refund: still dropped
		{10, statePending, timer.StatePending},  // decided before the batch
		{11, "none", "none"},                    // the poison
		{12, "none", timer.StatePending},        // its row deleted by hand: nothing scheduled
		{13, statePending, timer.StatePending},
	} {
		if a, tm := stateOf(t, batchPool, o[c.order]); a != c.award || tm != c.timer {
			t.Errorf("o%d: award %s, timer %s; want %s, %s", c.order, a, tm, c.award, c.timer)
		}
	}
	var reason string
	if err := batchPool.QueryRow(context.Background(), "SELECT reason FROM cancellations WHERE order_id = $1", o[6]).Scan(&reason); err != nil || reason != "customer_request" {
		t.Errorf("o6 cancellation %q (%v), want the first one's reason, customer_request", reason, err)
	}
}

// TestFireBatchEqualsOneByOne fires the due awards of two customers, with
// several each, as one batch, and the same timers one by one on a second
// database: the same awards given and PointsAwarded written, in the
// timers' order, each with its capture's correlation id; an award no longer
// pending gives nothing; each customer's points are the sum of theirs.
func TestFireBatchEqualsOneByOne(t *testing.T) {
	t.Parallel()
	custs := []string{newCustomer(), newCustomer()}
	var ids []string
	var msgs []consumer.Message
	want := map[string]int64{}
	for i := range 12 {
		ids = append(ids, newID())
		amount := int64(100 * (i + 1))
		msgs = append(msgs, message(t, captured(ids[i], custs[i%2], amount)))
		want[custs[i%2]] += points(amount)
	}
	setup := func() (*handler, *pgxpool.Pool) {
		h, pool := newHandler(t, -time.Second) // due at once
		if err := apply(t, h, pool, msgs); err != nil {
			t.Fatal(err)
		}
		// An award no longer pending, as a hand edit would leave it.
		if _, err := pool.Exec(context.Background(), "UPDATE awards SET state = 'dropped' WHERE order_id = $1", ids[5]); err != nil {
			t.Fatal(err)
		}
		return h, pool
	}
	want[custs[1]] -= points(600)

	batch, batchPool := setup()
	each, eachPool := setup()
	fire(t, batch, batchPool, ids...)
	for _, id := range ids {
		fire(t, each, eachPool, id)
	}
	got, ref := dump(t, batchPool), dump(t, eachPool)
	if !slices.Equal(got, ref) {
		t.Errorf("as a batch:\n%s\none by one:\n%s", strings.Join(got, "\n"), strings.Join(ref, "\n"))
	}
	rows, err := batchPool.Query(context.Background(), "SELECT key, correlation_id FROM outbox WHERE event_type = 'PointsAwarded' ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for rows.Next() {
		var key, corr string
		if err := rows.Scan(&key, &corr); err != nil {
			t.Fatal(err)
		}
		if corr != "test-"+key {
			t.Errorf("PointsAwarded of %s has correlation id %q, want its capture's", key, corr)
		}
		keys = append(keys, key)
	}
	if wantKeys := slices.Delete(slices.Clone(ids), 5, 6); !slices.Equal(keys, wantKeys) {
		t.Errorf("PointsAwarded for %v, want %v (the timers' order, without the dropped award)", keys, wantKeys)
	}
	for cust, pts := range want {
		var sum int64
		if err := batchPool.QueryRow(context.Background(),
			"SELECT coalesce(sum(points), 0) FROM awards WHERE customer_id = $1 AND state = 'awarded'", cust).Scan(&sum); err != nil || sum != pts {
			t.Errorf("customer %s: %d points (%v), want %d", cust, sum, err, pts)
		}
	}
}

// onePartition returns n order ids whose records all go to one partition
// (the same index on every topic: the producer's murmur2 hash of the key), so that
// committed before the service starts they reach it as one backlog, which
// the runner hands over in batches.
func onePartition(n int) []string {
	part := kgo.StickyKeyPartitioner(nil).ForTopic(contract.TopicPayments)
	var ids []string
	for len(ids) < n {
		id := newID()
		if part.Partition(&kgo.Record{Key: []byte(id)}, kafka.Partitions) == 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestBacklogBatches commits a backlog to one partition before the service
// starts, so the runner hands it over in batches: the same order captured
// twice (a redelivered record, and again under a new eventId), a capture
// and its refund, a poison record in the middle, a payment worth nothing,
// and many orders of one customer, whose awards then fire together. Each
// order ends as handled one by one; the poison is dead-lettered at once,
// without spoiling its batch.
func TestBacklogBatches(t *testing.T) {
	t.Parallel()
	b := newBundle(t, time.Second)
	dlq := servicetest.Collect(t, b.broker, "dlq."+serviceName)
	ids := onePartition(24)
	a, bb, p, c, d, many := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5:]
	cust, other := newCustomer(), newCustomer()

	twice := captured(a, cust, 1_000)
	b.in.ProduceAll(t, twice, captured(bb, other, 5_000), refunded(bb, other, 5_000))
	b.in.ProduceRaw(t, twice, mustJSON(t, twice)) // the same record again
	evs := []contract.Event{captured(a, cust, 1_000), captured(p, "cust\x00", 1_000), captured(c, other, 99), cancelled(d)}
	wantPoints := map[string]int64{a: 10}
	for i, id := range many {
		evs = append(evs, captured(id, cust, int64(100*(i+1))))
		wantPoints[id] = int64(i + 1)
	}
	last := captured(d, other, 1_000)
	b.in.ProduceAll(t, append(evs, last)...)
	_, base := b.start(t)

	waitPoints(t, base, cust, func(p pointsJSON) bool { return awarded(p, wantPoints) })
	b.waitHandled(t, last)
	b.waitHandled(t, evs[3]) // d's cancellation, on the orders topic
	if p := servicetest.WaitJSON(t, base+pointsPath(other), func(pointsJSON) bool { return true }); !nothing(p) {
		t.Errorf("customer %s: %+v, want nothing (refunded, worth nothing, cancelled)", other, p)
	}
	testenv.WaitFor(t, 30*time.Second, "the poison in the DLQ", func() bool { return len(dlq.Records(p)) == 1 })
	if h := dlq.Records(p)[0].Headers; h["x-dlq-attempts"] != "1" {
		t.Errorf("poison dead-lettered after %s attempts, want 1 (permanent)", h["x-dlq-attempts"])
	}
	for id := range wantPoints {
		if evs := b.pointsAwarded(t, id); len(evs) > 1 {
			t.Errorf("order %s: %d PointsAwarded, want 1", id, len(evs))
		}
	}
	b.out.WaitLast(t, many[len(many)-1], "PointsAwarded")
	if rec := b.out.Records(a)[0]; rec.Headers["x-correlation-id"] != "test-"+a {
		t.Errorf("PointsAwarded headers %v, want the capture's correlation id", rec.Headers)
	}
	for _, c := range []struct{ id, award, timer string }{
		{bb, stateDropped, timer.StateCancelled}, {p, "none", "none"}, {c, "none", "none"},
	} {
		if s, tm := b.awardState(t, c.id), b.timerState(t, c.id); s != c.award || tm != c.timer {
			t.Errorf("order %s: award %s, timer %s; want %s, %s", c.id, s, tm, c.award, c.timer)
		}
	}
	if s := b.awardState(t, d); s != stateDropped { // whichever of its topics came first
		t.Errorf("order %s: award %s, want dropped", d, s)
	}
	// The backlog went in batches: many awards decided in one transaction,
	// many given in one.
	var decided, given int
	err := b.pool.QueryRow(context.Background(), `SELECT count(DISTINCT created_at), count(DISTINCT awarded_at)
		FROM awards WHERE order_id = ANY($1)`, many).Scan(&decided, &given)
	if err != nil {
		t.Fatal(err)
	}
	if decided > 3 || given > len(many)/2 {
		t.Errorf("%d awards decided in %d transactions and given in %d; want batches", len(many), decided, given)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
