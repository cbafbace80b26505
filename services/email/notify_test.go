package email

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/services/email/internal/emaildb"
)

// newNotifier is a notifier on a fresh, migrated database, without
// consumer or relay: the tests call its handlers as the runner does.
func newNotifier(t testing.TB) (*notifier, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.NewPool(t)
	if err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	return &notifier{outbox: outbox.New(pool, outbox.Config{Service: serviceName}, log), exchange: "test.email", log: log}, pool
}

// consumed is ev, its envelope completed, as the runner hands it over, with
// a correlation id of its own.
func consumed(t testing.TB, ev contract.Event) consumer.Message {
	t.Helper()
	m := ev.Meta()
	m.Event, m.Version, m.OccurredAt = ev.Name(), 1, time.Now().UTC()
	if m.EventID == "" {
		m.EventID = newID()
	}
	value, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return consumer.Message{Key: m.OrderID, Value: value, Envelope: *m, CorrelationID: "corr-" + m.EventID}
}

// renamed is msg under a new eventId: the same event sent twice.
func renamed(msg consumer.Message) consumer.Message {
	msg.Envelope.EventID = newID()
	msg.CorrelationID = "corr-" + msg.Envelope.EventID
	return msg
}

// undecodable is a message whose envelope reads but whose event does not.
func undecodable(orderID string) consumer.Message {
	id := newID()
	return consumer.Message{
		Key:      orderID,
		Value:    fmt.Appendf(nil, `{"event":"PaymentCaptured","eventId":%q,"orderId":%q,"amountCents":"many"}`, id, orderID),
		Envelope: contract.Envelope{Event: "PaymentCaptured", EventID: id, OrderID: orderID, Version: 1},
	}
}

// handling applies messages with one handler to one database as the
// runner does.
type handling struct {
	h    consumer.BatchHandler
	pool *pgxpool.Pool
}

// apply runs the handler on msgs in one transaction, their keys locked
// first as the runner does, and commits unless it fails.
func (a handling) apply(t testing.TB, msgs []consumer.Message) error {
	t.Helper()
	ctx := context.Background()
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	keys := make([]string, len(msgs))
	for i, m := range msgs {
		keys[i] = m.Envelope.OrderID
	}
	if err := outbox.LockKeys(ctx, tx, slices.Sorted(slices.Values(keys))); err != nil {
		t.Fatal(err)
	}
	if err := a.h(ctx, tx, msgs); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return nil
}

// batch applies msgs as the runner does a batch: on a RecordError the
// records before the one named again, then that one alone, then the rest
// as the next batch. It returns the eventIds dead-lettered.
func (a handling) batch(t *testing.T, msgs []consumer.Message) (dead []string) {
	t.Helper()
	for len(msgs) > 0 {
		err := a.apply(t, msgs)
		if err == nil {
			return dead
		}
		re, ok := errors.AsType[*consumer.RecordError](err)
		if !ok {
			t.Fatalf("batch: %v, want nil or a RecordError", err)
		}
		if err := a.apply(t, msgs[:re.Index]); err != nil {
			t.Fatalf("the records before %d: %v", re.Index, err)
		}
		dead = append(dead, a.alone(t, msgs[re.Index])...)
		msgs = msgs[re.Index+1:]
	}
	return dead
}

// oneByOne applies each of msgs alone and returns the eventIds
// dead-lettered.
func (a handling) oneByOne(t *testing.T, msgs []consumer.Message) (dead []string) {
	t.Helper()
	for _, msg := range msgs {
		dead = append(dead, a.alone(t, msg)...)
	}
	return dead
}

// alone applies msg in a transaction of its own: its eventId when it
// fails permanently.
func (a handling) alone(t *testing.T, msg consumer.Message) []string {
	t.Helper()
	err := a.apply(t, []consumer.Message{msg})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, consumer.ErrPermanent):
		return []string{msg.Envelope.EventID}
	}
	t.Fatalf("%s of %s alone: %v", msg.Envelope.Event, msg.Key, err)
	return nil
}

// dump is the notifier's state in pool without what differs between two
// runs of the same events (times, row order): emails, recipients, waiting
// emails and outbox messages, each in full.
func dump(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT format('email %s %s %s %s %s %s', task_id, order_id, kind, to_addr, subject, status) FROM emails
		UNION ALL SELECT format('recipient %s %s %s %s', order_id, customer_id, email, currency) FROM recipients
		UNION ALL SELECT format('waiting %s %s %s %s', event_id, order_id, kind, tracking_id) FROM waiting_emails
		UNION ALL SELECT format('outbox %s %s %s %s %s %s', event_id, topic, key, event_type, correlation_id, payload) FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return lines
}

// scenario makes the events of n orders in a random order, as the three
// topics deliver them: each order placed or not, captured, failed or
// neither, a capture sometimes refunded, shipped none, once or twice (so
// often before any event names its recipient), some events twice, under
// the same eventId or a new one, with the address of the order or another,
// now and then one that is no address (its email is invalid) or a record
// that does not decode.
func scenario(t *testing.T, rng *rand.Rand, n int) []consumer.Message {
	var msgs []consumer.Message
	chance := func(p float64) bool { return rng.Float64() < p }
	for i := range n {
		id, cust := newID(), fmt.Sprintf("c-%d", i)
		currency := []string{"EUR", "USD", "SEK"}[rng.IntN(3)]
		primary := fmt.Sprintf("o%d@example.com", i)
		if chance(0.08) {
			primary = "nobody"
		}
		to := func() string {
			if chance(0.2) {
				return fmt.Sprintf("Other %d <o%d.b@example.com>", i, i)
			}
			return primary
		}
		cents := int64(rng.IntN(100_000))
		var evs []contract.Event
		if chance(0.8) {
			evs = append(evs, &contract.OrderPlaced{Envelope: contract.Envelope{OrderID: id}, CustomerID: cust, Email: to(),
				Items: []contract.Item{{SKU: "sku-1", Quantity: 1, UnitPriceCents: cents}}, TotalCents: cents, Currency: currency, PaymentToken: "tok_visa"})
		}
		switch p := rng.Float64(); {
		case p < 0.6:
			evs = append(evs, &contract.PaymentCaptured{Envelope: contract.Envelope{OrderID: id}, PaymentID: newID(), CustomerID: cust,
				Email: to(), AmountCents: cents, Currency: currency, Items: []contract.Item{{SKU: "sku-1", Quantity: 1, UnitPriceCents: cents}}})
			if chance(0.4) {
				evs = append(evs, &contract.PaymentRefunded{Envelope: contract.Envelope{OrderID: id}, PaymentID: newID(), CustomerID: cust,
					Email: to(), AmountCents: cents, Reason: "customer_request"})
			}
		case p < 0.9:
			evs = append(evs, &contract.PaymentFailed{Envelope: contract.Envelope{OrderID: id}, CustomerID: cust, Email: to(), Reason: "declined"})
		}
		for range rng.IntN(3) {
			evs = append(evs, &contract.OrderShipped{Envelope: contract.Envelope{OrderID: id}, PickID: newID(), TrackingID: "TRK-" + newID()[:8]})
		}
		for _, ev := range evs {
			msgs = append(msgs, consumed(t, ev))
		}
		if chance(0.05) {
			msgs = append(msgs, undecodable(id))
		}
	}
	rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	for i := len(msgs) - 1; i >= 0; i-- {
		switch p := rng.Float64(); {
		case p < 0.1: // redelivered later
			msgs = slices.Insert(msgs, i+rng.IntN(len(msgs)-i)+1, msgs[i])
		case p < 0.2: // sent again
			msgs = slices.Insert(msgs, i+rng.IntN(len(msgs)-i)+1, renamed(msgs[i]))
		}
	}
	return msgs
}

// TestBatchEqualsOneByOne applies random scenarios of many orders in
// random batches (several events of one order in a batch, and batches
// after an order's rows were written by earlier ones), the same events one
// at a time on a second database, and one at a time through the former
// per-record handler on a third: the emails, recipients, waiting emails
// and outbox messages end the same, and the same records are
// dead-lettered.
func TestBatchEqualsOneByOne(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 42))
			msgs := scenario(t, rng, 40)
			n, pool := newNotifier(t)
			_, eachPool := newNotifier(t)
			_, formerPool := newNotifier(t)
			batched := handling{n.handle, pool}
			each := handling{n.handle, eachPool}
			former := handling{consumer.PerRecord(n.handleRecord), formerPool}

			var deadBatch []string
			for rest := msgs; len(rest) > 0; {
				k := min(len(rest), 1+rng.IntN(60))
				deadBatch = append(deadBatch, batched.batch(t, rest[:k])...)
				rest = rest[k:]
			}
			deadEach, deadFormer := each.oneByOne(t, msgs), former.oneByOne(t, msgs)
			if !slices.Equal(deadBatch, deadEach) || !slices.Equal(deadEach, deadFormer) {
				t.Errorf("dead-lettered\n%v in batches,\n%v one by one,\n%v by the former handler", deadBatch, deadEach, deadFormer)
			}
			got, ref, was := dump(t, pool), dump(t, eachPool), dump(t, formerPool)
			if !slices.Equal(ref, was) {
				t.Errorf("one by one:\n%s\nthe former handler:\n%s", strings.Join(ref, "\n"), strings.Join(was, "\n"))
			}
			if !slices.Equal(got, ref) {
				t.Errorf("in batches:\n%s\none by one:\n%s", strings.Join(got, "\n"), strings.Join(ref, "\n"))
			}
			var kinds = map[string]int{}
			for _, l := range got {
				kinds[strings.Fields(l)[0]]++
			}
			if kinds["email"] < 40 || kinds["waiting"] == 0 || kinds["email"] != kinds["outbox"] || len(deadBatch) == 0 {
				t.Errorf("a scenario of %d records left %v and %d dead: too little to compare", len(msgs), kinds, len(deadBatch))
			}
		})
	}
}

// TestShippedBeforeRecipientInBatch puts an order's shipping emails before
// and after the first event naming its recipient in one batch: the one
// before waits and is queued by that event, to its address, with the
// correlation id of the event that queued it.
func TestShippedBeforeRecipientInBatch(t *testing.T) {
	t.Parallel()
	n, pool := newNotifier(t)
	a := handling{n.handle, pool}
	id := newID()
	early, named, late := consumed(t, shipped(id)), consumed(t, placed(id, "a@example.com")), consumed(t, shipped(id))
	if err := a.apply(t, []consumer.Message{early, named, late}); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(context.Background(), `SELECT e.task_id::text, e.to_addr, o.correlation_id FROM emails e
		JOIN outbox o ON o.event_id = e.task_id ORDER BY o.id`)
	if err != nil {
		t.Fatal(err)
	}
	type queued struct{ Task, To, Corr string }
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[queued])
	if err != nil {
		t.Fatal(err)
	}
	want := []queued{
		{taskID(early.Envelope.EventID).String(), "a@example.com", named.CorrelationID},
		{taskID(late.Envelope.EventID).String(), "a@example.com", late.CorrelationID},
	}
	if !slices.Equal(got, want) {
		t.Errorf("queued %v, want %v", got, want)
	}
	if rows := dump(t, pool); slices.ContainsFunc(rows, func(l string) bool { return strings.HasPrefix(l, "waiting") }) {
		t.Errorf("an email still waits: %v", rows)
	}
}

// TestPoisonRecordNamed gives the batch handler batches with a record that
// cannot succeed: its RecordError names that record, the first of them in
// slice order, as permanent; applied as the runner does, only it is
// dead-lettered. A task that exists already is passed over, invalid or
// not, as one by one.
func TestPoisonRecordNamed(t *testing.T) {
	t.Parallel()
	n, pool := newNotifier(t)
	a := handling{n.handle, pool}
	good := func() consumer.Message { return consumed(t, captured(newID(), "a@example.com")) }
	nobody := func() consumer.Message { return consumed(t, captured(newID(), "nobody")) }
	waitsForNobody := newID()
	placedNUL := placed(newID(), "a@example.com")
	placedNUL.CustomerID = "c\x00"
	shippedNUL := shipped(newID())
	shippedNUL.TrackingID = "TRK\x00"
	badID := consumed(t, placed(newID(), "a@example.com"))
	badID.Envelope.OrderID = "not-a-uuid"
	for _, c := range []struct {
		name string
		msgs []consumer.Message
		want int   // the record the RecordError names
		dead []int // the records dead-lettered
	}{
		{"undecodable", []consumer.Message{good(), good(), undecodable(newID()), good()}, 2, []int{2}},
		{"invalid task", []consumer.Message{good(), nobody(), good()}, 1, []int{1}},
		{"waiting email made invalid by its recipient", []consumer.Message{
			consumed(t, shipped(waitsForNobody)), good(), consumed(t, placed(waitsForNobody, "nobody")), good()}, 2, []int{2}},
		{"NUL in a recipient", []consumer.Message{good(), consumed(t, placedNUL), good()}, 1, []int{1}},
		{"NUL in a waiting email", []consumer.Message{good(), consumed(t, shippedNUL), good()}, 1, []int{1}},
		{"orderId", []consumer.Message{good(), badID}, 1, []int{1}},
		{"invalid task before an undecodable record", []consumer.Message{good(), nobody(), undecodable(newID())}, 1, []int{1, 2}},
		{"undecodable record before an invalid task", []consumer.Message{undecodable(newID()), nobody()}, 0, []int{0, 1}},
	} {
		err := a.apply(t, c.msgs)
		re, ok := errors.AsType[*consumer.RecordError](err)
		if !ok || re.Index != c.want || !errors.Is(err, consumer.ErrPermanent) {
			t.Errorf("%s: %v, want a permanent RecordError naming record %d", c.name, err, c.want)
			continue
		}
		var want []string
		for _, i := range c.dead {
			want = append(want, c.msgs[i].Envelope.EventID)
		}
		if dead := a.batch(t, c.msgs); !slices.Equal(dead, want) {
			t.Errorf("%s: dead-lettered %v, want records %v", c.name, dead, c.dead)
		}
	}
	var emails int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM emails").Scan(&emails); err != nil || emails != 13 {
		t.Errorf("%d emails (%v), want 13: one for each good record", emails, err)
	}

	// The event handled again, its inbox row pruned: its task exists, so
	// nothing is checked or queued.
	again := nobody()
	if _, err := emaildb.New(pool).InsertEmail(context.Background(), emaildb.InsertEmailParams{
		TaskID: taskID(again.Envelope.EventID), OrderID: uuid.MustParse(again.Key), Kind: kindConfirmation, ToAddr: "nobody", Subject: "s"}); err != nil {
		t.Fatal(err)
	}
	if err := a.apply(t, []consumer.Message{good(), again}); err != nil {
		t.Errorf("an existing task, invalid: %v, want it passed over", err)
	}
	var queued int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM outbox WHERE key = $1", again.Key).Scan(&queued); err != nil || queued != 0 {
		t.Errorf("the existing task queued %d times (%v), want 0", queued, err)
	}
}

// countingTx counts the statements sent through it.
type countingTx struct {
	pgx.Tx
	n *int
}

func (c countingTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	*c.n++
	return c.Tx.Exec(ctx, sql, args...)
}

func (c countingTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	*c.n++
	return c.Tx.Query(ctx, sql, args...)
}

func (c countingTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	*c.n++
	return c.Tx.QueryRow(ctx, sql, args...)
}
