package warehouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/timer"
	"github.com/orderflow/orderflow/services/warehouse/internal/warehousedb"
)

// direct is the warehouse handler on a migrated database of its own,
// driven without Kafka: apply runs a batch of messages as the consumer
// runner does, minus the inbox.
type direct struct {
	pool *pgxpool.Pool
	h    *handler
}

// newDirect returns a handler giving unseen SKUs defaultStock units and
// shipping an hour after scheduling.
func newDirect(tb testing.TB, defaultStock int64) *direct {
	tb.Helper()
	ctx := context.Background()
	pool := pgtest.NewPool(tb)
	if err := Migrate(ctx, pool); err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ob := outbox.New(pool, outbox.Config{Service: serviceName}, log)
	return &direct{pool: pool, h: &handler{outbox: ob, defaultStock: defaultStock, shipDelay: time.Hour, log: log}}
}

var offsets atomic.Int64

// newMessage is ev as the runner hands it to the handler, at the next
// offset, with the correlation id "test-<orderId>".
func newMessage(tb testing.TB, ev contract.Event) consumer.Message {
	tb.Helper()
	m := ev.Meta()
	m.Event, m.Version, m.EventID, m.OccurredAt = ev.Name(), 1, newID(), time.Now().UTC()
	value, err := json.Marshal(ev)
	if err != nil {
		tb.Fatal(err)
	}
	topic, _ := contract.TopicOf(ev.Name())
	return consumer.Message{
		Topic: topic, Offset: offsets.Add(1), Key: m.OrderID, Value: value,
		Envelope: *m, CorrelationID: "test-" + m.OrderID,
	}
}

// apply handles msgs in one transaction, after locking their orders.
func (d *direct) apply(tb testing.TB, msgs []consumer.Message) {
	tb.Helper()
	if err := d.try(msgs); err != nil {
		tb.Fatal(err)
	}
}

// try is apply returning the handler's error, the transaction rolled back.
func (d *direct) try(msgs []consumer.Message) error {
	ctx := context.Background()
	return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		keys := make([]string, len(msgs))
		for i, m := range msgs {
			keys[i] = m.Envelope.OrderID
		}
		if err := outbox.LockKeys(ctx, tx, keys); err != nil {
			return err
		}
		return d.h.handle(ctx, tx, msgs)
	})
}

// fire fires timers with the ship BatchFireFunc in one transaction, after
// locking their keys, and marks them fired as the timer worker does.
func (d *direct) fire(tb testing.TB, timers []timer.Timer) error {
	tb.Helper()
	ctx := context.Background()
	return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		keys := make([]string, len(timers))
		ids := make([]int64, len(timers))
		for i, t := range timers {
			keys[i], ids[i] = t.Key, t.ID
		}
		if err := outbox.LockKeys(ctx, tx, keys); err != nil {
			return err
		}
		if err := d.h.ship(ctx, tx, timers); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE timers SET state = 'fired', done_at = now() WHERE id = ANY($1)", ids)
		return err
	})
}

// timers returns the ship timers of orderIDs, in that order, whatever
// their state.
func (d *direct) timers(tb testing.TB, orderIDs []string) []timer.Timer {
	tb.Helper()
	var ts []timer.Timer
	for _, id := range orderIDs {
		t, err := timer.Get(context.Background(), d.pool, timerShip, id)
		if err != nil {
			tb.Fatal(err)
		}
		ts = append(ts, t)
	}
	return ts
}

func (d *direct) setStock(tb testing.TB, sku string, n int64) {
	tb.Helper()
	if err := warehousedb.New(d.pool).SetStock(context.Background(), warehousedb.SetStockParams{Sku: sku, Available: n}); err != nil {
		tb.Fatal(err)
	}
}

// state is everything the handler and the ship timer write, as text that
// two databases fed the same messages must agree on: pick and tracking
// ids, which are random, appear only as whether the events and timers
// carry the ones of their order's shipment.
func (d *direct) state(tb testing.TB) string {
	tb.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT order_id, status, pick_id IS NOT NULL, tracking_id IS NOT NULL, cancel_reason FROM shipments ORDER BY order_id`,
		`SELECT order_id, sku, quantity, reserved FROM shipment_lines ORDER BY order_id, sku`,
		`SELECT sku, available FROM stock ORDER BY sku`,
		`SELECT t.key, t.state, convert_from(t.payload, 'UTF8')::jsonb->>'correlationId',
		        ` + same("convert_from(t.payload, 'UTF8')::jsonb->>'pickId'", "s.pick_id::text") + `
		 FROM timers t LEFT JOIN shipments s ON s.order_id::text = t.key ORDER BY t.key`,
		`SELECT o.event_type, o.key, o.correlation_id, o.payload::jsonb - 'eventId' - 'occurredAt' - 'pickId' - 'trackingId',
		        ` + same("o.payload->>'pickId'", "s.pick_id::text") + `, ` + same("o.payload->>'trackingId'", "s.tracking_id") + `
		 FROM outbox o LEFT JOIN shipments s ON s.order_id::text = o.key ORDER BY o.txid, o.id`,
	} {
		rows, err := d.pool.Query(context.Background(), q)
		if err != nil {
			tb.Fatal(err)
		}
		for rows.Next() {
			vs, err := rows.Values()
			if err != nil {
				tb.Fatal(err)
			}
			fmt.Fprintln(&b, vs...)
		}
		if err := rows.Err(); err != nil {
			tb.Fatal(err)
		}
		b.WriteString("--\n")
	}
	return b.String()
}

// same is the SQL saying whether got, when not null, is the shipment's
// want: "" for null, "its own", or "ANOTHER" (which the tests look for).
func same(got, want string) string {
	return fmt.Sprintf("CASE WHEN %[1]s IS NULL THEN '' WHEN %[1]s = %[2]s THEN 'its own' ELSE 'ANOTHER' END", got, want)
}

// TestBatchEqualsOneByOne feeds random sequences of PaymentCaptured and
// OrderCancelled over a few orders and scarce SKUs to two databases: to
// one in batches of random sizes, to the other one record at a time. The
// same order comes several times in a batch (captured then cancelled,
// cancelled before its capture, captured twice, cancelled twice), orders
// compete for the last units, and cancellations return units that later
// orders of the same batch take. Both must end the same: shipments, lines,
// stock, timers and the events, in the same order with the same content.
func TestBatchEqualsOneByOne(t *testing.T) {
	t.Parallel()
	batched, single := newDirect(t, 1000), newDirect(t, 1000)
	for round := range 12 {
		rng := rand.New(rand.NewPCG(uint64(round), 7))
		skus := []string{newSKU("S1"), newSKU("S2"), newSKU("S3"), newSKU("PLENTY")}
		for _, sku := range skus[:3] {
			n := rng.Int64N(6)
			batched.setStock(t, sku, n)
			single.setStock(t, sku, n)
		}
		ids := make([]string, 6)
		for i := range ids {
			ids[i] = newID()
		}
		msgs := make([]consumer.Message, 50)
		for i := range msgs {
			id := ids[rng.IntN(len(ids))]
			if rng.IntN(3) == 0 {
				c := cancelled(id)
				c.Reason = fmt.Sprintf("reason-%d", i)
				msgs[i] = newMessage(t, c)
				continue
			}
			var its []contract.Item
			for range 1 + rng.IntN(3) {
				its = append(its, item(skus[rng.IntN(len(skus))], 1+rng.IntN(3)))
			}
			msgs[i] = newMessage(t, captured(id, its...))
		}
		for rest := msgs; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(25))
			batched.apply(t, rest[:n])
			rest = rest[n:]
		}
		for i := range msgs {
			single.apply(t, msgs[i:i+1])
		}
	}
	got, want := batched.state(t), single.state(t)
	if got != want {
		t.Errorf("batched:\n%s\none by one:\n%s", got, want)
	}
	if strings.Contains(want, "ANOTHER") {
		t.Errorf("an event or timer carries another pick or tracking id than its shipment's:\n%s", want)
	}
}

// TestBatchLastUnits: forty orders after ten units of one SKU in one
// batch get them in offset order: the first ten are scheduled, the rest
// unavailable, nothing is oversold.
func TestBatchLastUnits(t *testing.T) {
	t.Parallel()
	d := newDirect(t, 1000)
	sku := newSKU("LAST")
	d.setStock(t, sku, 10)
	msgs := make([]consumer.Message, 40)
	for i := range msgs {
		msgs[i] = newMessage(t, captured(newID(), item(sku, 1), item(newSKU("OTHER"), 1)))
	}
	d.apply(t, msgs)
	rows, err := d.pool.Query(context.Background(), "SELECT key, event_type FROM outbox ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Key, Event string }])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("%d events, want %d", len(got), len(msgs))
	}
	for i, ev := range got {
		want := "PickScheduled"
		if i >= 10 {
			want = "StockUnavailable"
		}
		if ev.Key != msgs[i].Envelope.OrderID || ev.Event != want {
			t.Errorf("event %d: %s for %s, want %s for %s", i, ev.Event, ev.Key, want, msgs[i].Envelope.OrderID)
		}
	}
	var available int64
	if err := d.pool.QueryRow(context.Background(), "SELECT available FROM stock WHERE sku = $1", sku).Scan(&available); err != nil || available != 0 {
		t.Errorf("available %d (%v), want 0", available, err)
	}
}

// TestBatchRecordError: a record that cannot be handled is named by its
// index, permanently, and the batch's transaction writes nothing.
func TestBatchRecordError(t *testing.T) {
	t.Parallel()
	d := newDirect(t, 1000)
	poison := captured(newID(), item("BAD\x00SKU", 1))
	msgs := []consumer.Message{
		newMessage(t, captured(newID(), item(newSKU("OK"), 1))),
		newMessage(t, cancelled(newID())),
		newMessage(t, poison),
		newMessage(t, captured(newID(), item(newSKU("OK"), 1))),
	}
	err := d.try(msgs)
	re, ok := errors.AsType[*consumer.RecordError](err)
	if !ok || re.Index != 2 || !errors.Is(err, consumer.ErrPermanent) {
		t.Fatalf("error %v, want a permanent RecordError for record 2", err)
	}
	if got := d.state(t); got != "--\n--\n--\n--\n--\n" {
		t.Errorf("a failed batch wrote:\n%s", got)
	}
	d.apply(t, msgs[:2])
	d.apply(t, msgs[3:])
}

// TestShipBatch fires the ship timers of many picks in one batch, among
// them picks cancelled since (their timers fire anyway here, as if they
// had escaped the cancel), and the same timers one at a time on another
// database: both end the same, every scheduled pick shipped once with
// OrderShipped carrying its pick, its tracking id and the correlation id
// of the order's PaymentCaptured, and the cancelled ones not shipped. A
// timer whose key is no order id is named by a FireError.
func TestShipBatch(t *testing.T) {
	t.Parallel()
	batched, single := newDirect(t, 1000), newDirect(t, 1000)
	ids := make([]string, 30)
	var msgs, cancels []consumer.Message
	for i := range ids {
		ids[i] = newID()
		msgs = append(msgs, newMessage(t, captured(ids[i], item(newSKU("SHIP"), 1+i%3))))
		if i%4 == 0 {
			cancels = append(cancels, newMessage(t, cancelled(ids[i])))
		}
	}
	for _, d := range []*direct{batched, single} {
		d.apply(t, msgs)
		d.apply(t, cancels)
	}

	if err := batched.fire(t, batched.timers(t, ids)); err != nil {
		t.Fatal(err)
	}
	for _, tm := range single.timers(t, ids) {
		if err := single.fire(t, []timer.Timer{tm}); err != nil {
			t.Fatal(err)
		}
	}
	got, want := batched.state(t), single.state(t)
	if got != want {
		t.Errorf("batched:\n%s\none by one:\n%s", got, want)
	}
	if strings.Contains(want, "ANOTHER") {
		t.Errorf("an event carries another pick or tracking id than its shipment's:\n%s", want)
	}
	var shipped, events int
	err := batched.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM shipments WHERE status = 'shipped'),
		(SELECT count(*) FROM outbox WHERE event_type = 'OrderShipped')`).Scan(&shipped, &events)
	if want := len(ids) - len(cancels); err != nil || shipped != want || events != want {
		t.Errorf("%d shipped, %d OrderShipped (%v), want %d", shipped, events, err, want)
	}

	bad := batched.timers(t, ids[:3])
	bad[1].Key = "not-an-order"
	err = batched.fire(t, bad)
	if fe, ok := errors.AsType[*timer.FireError](err); !ok || fe.Index != 1 {
		t.Errorf("error %v, want a FireError for timer 1", err)
	}
}
