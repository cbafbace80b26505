package orders

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/kafka"
)

// running is the whole service (Run) on a fresh database and broker, with a
// producer for the topics it consumes and a collector of the topic it
// emits on.
type running struct {
	base     string
	pool     *pgxpool.Pool
	producer *servicetest.Producer
	emitted  *servicetest.Collector // the "orders" topic
}

func runService(t *testing.T) *running {
	t.Helper()
	broker := kafkatest.Start(t)
	// kafkatest creates every topic; these are the ones this service needs,
	// its dead-letter topic included.
	if err := kafka.EnsureTopics(context.Background(), broker.Addrs, broker.Admin, contract.TopicOrders,
		contract.TopicPayments, contract.TopicWarehouse, contract.TopicLoyalty, "dlq.orders"); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Config: servicetest.Config(t, broker)}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	testenv.Start(t, func(ctx context.Context) error { return Run(ctx, cfg, log) })
	s := &running{base: "http://" + cfg.HTTPAddr}
	servicetest.WaitReady(t, s.base)
	s.pool = servicetest.Pool(t, cfg.Config)
	s.producer = servicetest.NewProducer(t, broker)
	s.emitted = servicetest.Collect(t, broker, contract.TopicOrders)
	return s
}

// orderView is GET /orders/{id}'s answer.
type orderView struct {
	orderResponse
	UpdatedAt time.Time `json:"updatedAt"`
}

// events lists the timeline as service/event.
func (o orderView) events() []string {
	var out []string
	for _, e := range o.Timeline {
		out = append(out, e.Service+"/"+e.Event)
	}
	return out
}

func (o orderView) count(event string) int {
	n := 0
	for _, e := range o.Timeline {
		if e.Event == event {
			n++
		}
	}
	return n
}

// place posts validBody and returns the new order's id.
func (s *running) place(t *testing.T) uuid.UUID {
	t.Helper()
	resp := do(t, http.MethodPost, s.base+"/orders", validBody, nil)
	if resp.status != http.StatusCreated {
		t.Fatalf("POST /orders: %d %s", resp.status, resp.body)
	}
	return decode[orderResponse](t, resp.body).ID
}

func (s *running) get(t *testing.T, id uuid.UUID) orderView {
	t.Helper()
	resp := do(t, http.MethodGet, s.base+"/orders/"+id.String(), "", nil)
	if resp.status != http.StatusOK {
		t.Fatalf("GET order: %d %s", resp.status, resp.body)
	}
	return decode[orderView](t, resp.body)
}

// wait polls GET /orders/{id} until cond holds.
func (s *running) wait(t *testing.T, id uuid.UUID, cond func(orderView) bool) orderView {
	t.Helper()
	return servicetest.WaitJSON(t, s.base+"/orders/"+id.String(), cond)
}

func (s *running) cancel(t *testing.T, id uuid.UUID, body string, header map[string]string) response {
	t.Helper()
	return do(t, http.MethodPost, s.base+"/orders/"+id.String()+"/cancel", body, header)
}

// produce writes ev to its topic as its service would and returns the
// record's value, to produce it again verbatim.
func (s *running) produce(t *testing.T, ev contract.Event) []byte {
	t.Helper()
	return s.producer.Produce(t, ev)
}

// outboxEvents lists the event types orders wrote for the order, oldest
// first.
func (s *running) outboxEvents(t *testing.T, id uuid.UUID) []string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), "SELECT event_type FROM outbox WHERE key = $1 ORDER BY id", id.String())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func status(want string) func(orderView) bool {
	return func(o orderView) bool { return o.Status == want }
}

// seen holds once the order's timeline has the event: the consumer has
// committed it.
func seen(ev contract.Event) func(orderView) bool {
	id := uuid.MustParse(ev.Meta().EventID)
	return func(o orderView) bool {
		return slices.ContainsFunc(o.Timeline, func(e timelineView) bool { return e.EventID == id })
	}
}

type timelineView = struct {
	Event      string    `json:"event"`
	EventID    uuid.UUID `json:"eventId"`
	Service    string    `json:"service"`
	OccurredAt time.Time `json:"occurredAt"`
}

// Events other services emit about order id. Ids and times are set here,
// times to the microsecond PostgreSQL keeps, so tests can compare them with
// the timeline.
func envelope(id uuid.UUID) contract.Envelope {
	return contract.Envelope{
		OrderID:    id.String(),
		EventID:    uuid.Must(uuid.NewV7()).String(),
		OccurredAt: time.Now().UTC().Truncate(time.Microsecond),
	}
}

func captured(id uuid.UUID) *contract.PaymentCaptured {
	return &contract.PaymentCaptured{Envelope: envelope(id), PaymentID: uuid.NewString(), CustomerID: "c-42",
		Email: "ada@example.com", AmountCents: 2500, Currency: "EUR",
		Items: []contract.Item{{SKU: "book-1", Quantity: 2, UnitPriceCents: 1250}}}
}

func paymentFailed(id uuid.UUID) *contract.PaymentFailed {
	return &contract.PaymentFailed{Envelope: envelope(id), CustomerID: "c-42", Email: "ada@example.com", Reason: "declined"}
}

func refunded(id uuid.UUID) *contract.PaymentRefunded {
	return &contract.PaymentRefunded{Envelope: envelope(id), PaymentID: uuid.NewString(), CustomerID: "c-42",
		Email: "ada@example.com", AmountCents: 2500, Reason: "out_of_stock"}
}

func pickScheduled(id uuid.UUID) *contract.PickScheduled {
	return &contract.PickScheduled{Envelope: envelope(id), PickID: "pick-" + id.String()}
}

func pickCancelled(id uuid.UUID) *contract.PickCancelled {
	return &contract.PickCancelled{Envelope: envelope(id), PickID: "pick-" + id.String()}
}

func shipped(id uuid.UUID) *contract.OrderShipped {
	return &contract.OrderShipped{Envelope: envelope(id), PickID: "pick-" + id.String(), TrackingID: "TRK-1"}
}

func stockUnavailable(id uuid.UUID) *contract.StockUnavailable {
	return &contract.StockUnavailable{Envelope: envelope(id), SKUs: []string{"book-1"}}
}

func pointsAwarded(id uuid.UUID, points int64) *contract.PointsAwarded {
	return &contract.PointsAwarded{Envelope: envelope(id), CustomerID: "c-42", Points: points}
}

// TestConsume runs the whole service and feeds it the events of payments,
// warehouse and loyalty through the broker. Each case has an order of its
// own. Where a case must show that an event changed nothing, it waits for
// the event in the timeline (the consumer committed it) and then looks.
func TestConsume(t *testing.T) {
	t.Parallel()
	s := runService(t)

	t.Run("happy path", func(t *testing.T) {
		t.Parallel()
		id := s.place(t)
		placed := s.get(t, id)

		c := captured(id)
		s.produce(t, c)
		paid := s.wait(t, id, status("paid"))
		if !paid.UpdatedAt.After(placed.UpdatedAt) {
			t.Errorf("updatedAt %v after the capture, %v before", paid.UpdatedAt, placed.UpdatedAt)
		}
		p := pickScheduled(id)
		s.produce(t, p)
		if o := s.wait(t, id, seen(p)); o.Status != "paid" {
			t.Errorf("status %s after PickScheduled", o.Status)
		}
		sh := shipped(id)
		s.produce(t, sh)
		s.wait(t, id, status("shipped"))
		pa := pointsAwarded(id, 25)
		s.produce(t, pa)
		o := s.wait(t, id, func(o orderView) bool { return o.PointsAwarded != nil && *o.PointsAwarded == 25 })

		if o.Status != "shipped" || o.CancelReason != nil || !o.UpdatedAt.After(paid.UpdatedAt) {
			t.Errorf("order %+v", o)
		}
		want := []struct {
			service string
			ev      contract.Event
		}{{"payments", c}, {"warehouse", p}, {"warehouse", sh}, {"loyalty", pa}}
		if len(o.Timeline) != 1+len(want) {
			t.Fatalf("timeline %v", o.events())
		}
		if first := o.Timeline[0]; first.Event != "OrderPlaced" || first.Service != "orders" || first.EventID == uuid.Nil ||
			!first.OccurredAt.Equal(o.CreatedAt) {
			t.Errorf("first timeline entry %+v", first)
		}
		for i, w := range want {
			got, m := o.Timeline[i+1], w.ev.Meta()
			if got.Event != w.ev.Name() || got.Service != w.service || got.EventID.String() != m.EventID || !got.OccurredAt.Equal(m.OccurredAt) {
				t.Errorf("timeline[%d] = %+v, want %s from %s, id %s at %v", i+1, got, w.ev.Name(), w.service, m.EventID, m.OccurredAt)
			}
		}
		if got := s.outboxEvents(t, id); !slices.Equal(got, []string{"OrderPlaced"}) {
			t.Errorf("orders emitted %v", got)
		}
	})

	t.Run("shipped before the capture stays shipped", func(t *testing.T) {
		t.Parallel()
		id := s.place(t)
		s.produce(t, shipped(id))
		s.wait(t, id, status("shipped"))
		late := captured(id)
		s.produce(t, late)
		failed := paymentFailed(id)
		s.produce(t, failed)
		o := s.wait(t, id, func(o orderView) bool { return seen(late)(o) && seen(failed)(o) })
		if o.Status != "shipped" {
			t.Errorf("status %s after a late capture and failure, want shipped", o.Status)
		}
	})

	t.Run("payment failed", func(t *testing.T) {
		t.Parallel()
		id := s.place(t)
		s.produce(t, paymentFailed(id))
		s.wait(t, id, status("payment_failed"))
		late := captured(id)
		s.produce(t, late)
		if o := s.wait(t, id, seen(late)); o.Status != "payment_failed" {
			t.Errorf("status %s after a late capture", o.Status)
		}

		before := s.get(t, id)
		resp := s.cancel(t, id, "", nil)
		if resp.status != http.StatusConflict {
			t.Fatalf("cancel: %d %s", resp.status, resp.body)
		}
		if p := resp.problem(t); p.Type != ProblemNotCancellable || !strings.Contains(p.Detail, "payment failed") {
			t.Errorf("problem %+v", p)
		}
		s.assertUnchanged(t, id, before)
	})

	t.Run("stock unavailable cancels once", func(t *testing.T) {
		t.Parallel()
		id := s.place(t)
		s.produce(t, captured(id))
		s.wait(t, id, status("paid"))

		su := stockUnavailable(id)
		value := s.produce(t, su)
		o := s.wait(t, id, status("cancelled"))
		if o.CancelReason == nil || *o.CancelReason != "out_of_stock" {
			t.Errorf("cancelReason %v", o.CancelReason)
		}
		if got, want := o.events(), []string{"orders/OrderPlaced", "payments/PaymentCaptured",
			"warehouse/StockUnavailable", "orders/OrderCancelled"}; !slices.Equal(got, want) {
			t.Errorf("timeline %v, want %v", got, want)
		}
		rec := s.lastEmitted(t, id, "OrderCancelled")
		ev := decode[contract.OrderCancelled](t, rec.Value)
		if ev.Reason != "out_of_stock" || ev.EventID != o.Timeline[3].EventID.String() ||
			rec.Headers["ce_source"] != "orderflow/orders" || rec.Headers["x-correlation-id"] != "test-"+id.String() {
			t.Errorf("OrderCancelled %s with headers %v", rec.Value, rec.Headers)
		}

		// The same record again, then one behind it on its partition: once
		// that one is in the timeline, the duplicate was handled.
		s.producer.ProduceRaw(t, su, value)
		marker := pickCancelled(id)
		s.produce(t, marker)
		s.wait(t, id, seen(marker))
		s.assertCancelledOnce(t, id)

		// The timeline's unique eventId holds even when the inbox has
		// forgotten the event (its rows are pruned after a while).
		if _, err := s.pool.Exec(context.Background(), "DELETE FROM processed_events WHERE event_id = $1", su.EventID); err != nil {
			t.Fatal(err)
		}
		s.producer.ProduceRaw(t, su, value)
		marker = pickCancelled(id)
		s.produce(t, marker)
		s.wait(t, id, seen(marker))
		s.assertCancelledOnce(t, id)
		var n int
		if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM processed_events WHERE event_id = $1", su.EventID).Scan(&n); err != nil || n != 1 {
			t.Errorf("the redelivery was not handled: %d inbox rows (%v)", n, err)
		}
	})

	t.Run("stock unavailable before the capture", func(t *testing.T) {
		t.Parallel()
		id := s.place(t)
		s.produce(t, stockUnavailable(id))
		s.wait(t, id, status("cancelled"))
		late := captured(id)
		s.produce(t, late)
		r := refunded(id)
		s.produce(t, r)
		o := s.wait(t, id, func(o orderView) bool { return seen(late)(o) && seen(r)(o) })
		if o.Status != "cancelled" || o.CancelReason == nil || *o.CancelReason != "out_of_stock" {
			t.Errorf("order %+v", o)
		}
		// A customer's cancel now is answered as done, with the first reason.
		resp := s.cancel(t, id, `{"reason":"too slow"}`, nil)
		if resp.status != http.StatusAccepted {
			t.Fatalf("cancel: %d %s", resp.status, resp.body)
		}
		if o := decode[orderView](t, resp.body); o.Status != "cancelled" || *o.CancelReason != "out_of_stock" {
			t.Errorf("cancel answered %s", resp.body)
		}
		s.assertCancelledOnce(t, id)
	})

	t.Run("event about an unknown order is skipped", func(t *testing.T) {
		t.Parallel()
		unknown := captured(uuid.Must(uuid.NewV7()))
		s.produce(t, unknown)
		// Skipped means handled: its inbox row committed, neither retried
		// for ever nor dead-lettered.
		testenv.WaitFor(t, 30*time.Second, "the unknown order's event handled", func() bool {
			var n int
			err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM processed_events WHERE event_id = $1", unknown.EventID).Scan(&n)
			return err == nil && n == 1
		})
		var n int
		if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM order_timeline WHERE event_id = $1", unknown.EventID).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d timeline rows for it (%v)", n, err)
		}
		id := s.place(t)
		s.produce(t, captured(id))
		s.wait(t, id, status("paid"))
	})

	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		id := s.place(t)
		s.produce(t, captured(id))
		s.wait(t, id, status("paid"))

		resp := s.cancel(t, id, `{"reason":"changed my mind"}`, map[string]string{"X-Correlation-ID": "cancel-test"})
		if resp.status != http.StatusAccepted || resp.header.Get("X-Correlation-ID") != "cancel-test" {
			t.Fatalf("cancel: %d %v %s", resp.status, resp.header, resp.body)
		}
		o := decode[orderView](t, resp.body)
		if o.ID != id || o.Status != "cancelled" || o.CancelReason == nil || *o.CancelReason != "changed my mind" ||
			len(o.Timeline) != 3 || o.Timeline[2].Event != "OrderCancelled" || o.Timeline[2].Service != "orders" {
			t.Fatalf("cancel answered %s", resp.body)
		}
		if got := s.get(t, id); got.Status != "cancelled" || len(got.Timeline) != 3 {
			t.Errorf("GET after cancel: %+v", got)
		}

		rec := s.lastEmitted(t, id, "OrderCancelled")
		ev := decode[contract.OrderCancelled](t, rec.Value)
		if ev.Reason != "changed my mind" || ev.OrderID != id.String() || ev.EventID != o.Timeline[2].EventID.String() ||
			!ev.OccurredAt.Equal(o.Timeline[2].OccurredAt) ||
			rec.Headers["x-correlation-id"] != "cancel-test" || rec.Headers["ce_type"] != "OrderCancelled" ||
			rec.Headers["ce_id"] != ev.EventID || rec.Headers["ce_source"] != "orderflow/orders" {
			t.Errorf("OrderCancelled %s with headers %v", rec.Value, rec.Headers)
		}

		// Again: accepted, the first reason kept, no second event.
		resp = s.cancel(t, id, "", nil)
		if resp.status != http.StatusAccepted {
			t.Fatalf("second cancel: %d %s", resp.status, resp.body)
		}
		if again := decode[orderView](t, resp.body); again.Status != "cancelled" || *again.CancelReason != "changed my mind" ||
			!again.UpdatedAt.Equal(o.UpdatedAt) {
			t.Errorf("second cancel answered %s", resp.body)
		}
		s.assertCancelledOnce(t, id)

		// The shipment that crossed the cancellation changes nothing.
		late := shipped(id)
		s.produce(t, late)
		if o := s.wait(t, id, seen(late)); o.Status != "cancelled" {
			t.Errorf("status %s after a late OrderShipped", o.Status)
		}
		if n := len(s.emitted.Names(id.String())); n != 2 {
			t.Errorf("orders emitted %v", s.emitted.Names(id.String()))
		}
	})

	t.Run("cancel after shipping", func(t *testing.T) {
		t.Parallel()
		id := s.place(t)
		s.produce(t, captured(id))
		s.produce(t, shipped(id))
		before := s.wait(t, id, func(o orderView) bool { return o.Status == "shipped" && o.count("PaymentCaptured") == 1 })
		resp := s.cancel(t, id, `{"reason":"too late"}`, nil)
		if resp.status != http.StatusConflict {
			t.Fatalf("cancel: %d %s", resp.status, resp.body)
		}
		if p := resp.problem(t); p.Type != ProblemNotCancellable || !strings.Contains(p.Detail, "shipped") {
			t.Errorf("problem %+v", p)
		}
		s.assertUnchanged(t, id, before)
	})

	t.Run("cancel unknown order", func(t *testing.T) {
		t.Parallel()
		for _, id := range []string{uuid.NewString(), "not-a-uuid"} {
			resp := do(t, http.MethodPost, s.base+"/orders/"+id+"/cancel", "", nil)
			if resp.status != http.StatusNotFound {
				t.Errorf("%s: %d %s", id, resp.status, resp.body)
				continue
			}
			resp.problem(t)
		}
	})
}

// lastEmitted waits until the last record orders emitted about the order
// is the event, and returns it.
func (s *running) lastEmitted(t *testing.T, id uuid.UUID, event string) servicetest.Record {
	t.Helper()
	s.emitted.WaitLast(t, id.String(), event)
	recs := s.emitted.Records(id.String())
	return recs[len(recs)-1]
}

// assertCancelledOnce checks the order is cancelled with one OrderCancelled
// in its timeline and in the outbox.
func (s *running) assertCancelledOnce(t *testing.T, id uuid.UUID) {
	t.Helper()
	o := s.get(t, id)
	if o.Status != "cancelled" || o.count("OrderCancelled") != 1 || o.count("StockUnavailable") > 1 {
		t.Errorf("order %s, timeline %v", o.Status, o.events())
	}
	if got := s.outboxEvents(t, id); !slices.Equal(got, []string{"OrderPlaced", "OrderCancelled"}) {
		t.Errorf("orders emitted %v, want one OrderPlaced and one OrderCancelled", got)
	}
}

// assertUnchanged checks a refused request changed nothing of the order.
func (s *running) assertUnchanged(t *testing.T, id uuid.UUID, before orderView) {
	t.Helper()
	after := s.get(t, id)
	b, _ := json.Marshal(before)
	a, _ := json.Marshal(after)
	if string(a) != string(b) {
		t.Errorf("order changed\nbefore %s\n after %s", b, a)
	}
	if got := s.outboxEvents(t, id); !slices.Equal(got, []string{"OrderPlaced"}) {
		t.Errorf("orders emitted %v", got)
	}
}

// TestConsumeBatches feeds many orders' events at once, several of one
// order on one topic, so the runner hands them over in batches: each order
// ends exactly where one-by-one handling leads, one OrderCancelled per
// cancelled order, every event once in the timeline.
func TestConsumeBatches(t *testing.T) {
	t.Parallel()
	s := runService(t)
	const orders = 60
	ids := make([]uuid.UUID, orders)
	var payments, warehouse, loyalty []contract.Event
	for i := range ids {
		ids[i] = s.place(t)
		id := ids[i]
		switch i % 3 {
		case 0: // paid, shipped; the late StockUnavailable moves nothing
			payments = append(payments, captured(id))
			warehouse = append(warehouse, pickScheduled(id), shipped(id), stockUnavailable(id))
			loyalty = append(loyalty, pointsAwarded(id, int64(i)))
		case 1: // out of stock, whenever the capture comes
			warehouse = append(warehouse, stockUnavailable(id), pickCancelled(id))
			payments = append(payments, captured(id), refunded(id))
		case 2: // a failure after the capture changes nothing
			payments = append(payments, captured(id), paymentFailed(id))
		}
	}
	s.producer.ProduceAll(t, warehouse...)
	s.producer.ProduceAll(t, payments...)
	s.producer.ProduceAll(t, loyalty...)

	want := map[int]struct {
		status   string
		events   int
		outbox   []string
		cancelBy string
	}{
		0: {"shipped", 6, []string{"OrderPlaced"}, ""},
		1: {"cancelled", 6, []string{"OrderPlaced", "OrderCancelled"}, "out_of_stock"},
		2: {"paid", 3, []string{"OrderPlaced"}, ""},
	}
	for i, id := range ids {
		w := want[i%3]
		o := s.wait(t, id, func(o orderView) bool { return len(o.Timeline) == w.events })
		if o.Status != w.status {
			t.Errorf("order %d: status %s, want %s (timeline %v)", i, o.Status, w.status, o.events())
		}
		if w.cancelBy != "" && (o.CancelReason == nil || *o.CancelReason != w.cancelBy) {
			t.Errorf("order %d: cancelReason %v, want %s", i, o.CancelReason, w.cancelBy)
		}
		if i%3 == 0 && (o.PointsAwarded == nil || *o.PointsAwarded != int64(i)) {
			t.Errorf("order %d: pointsAwarded %v, want %d", i, o.PointsAwarded, i)
		}
		if got := s.outboxEvents(t, id); !slices.Equal(got, w.outbox) {
			t.Errorf("order %d: outbox %v, want %v", i, got, w.outbox)
		}
	}
	// Batches formed: the warehouse's 140 events took far fewer transactions.
	var events, txs int
	if err := s.pool.QueryRow(context.Background(),
		"SELECT count(*), count(DISTINCT xmin::text) FROM order_timeline WHERE service = 'warehouse'").Scan(&events, &txs); err != nil {
		t.Fatal(err)
	}
	if txs*2 > events {
		t.Errorf("%d warehouse events in %d transactions: not batched", events, txs)
	}
}
