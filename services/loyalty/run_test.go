package loyalty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/timer"
)

// bundle is a loyalty database and broker with a producer for the
// service's input topics and a collector of what it emits; start runs an
// instance of the service on them.
type bundle struct {
	cfg    Config
	broker *kafkatest.Broker
	pool   *pgxpool.Pool
	in     *servicetest.Producer
	out    *servicetest.Collector // "loyalty"
}

// newBundle prepares a fresh database and broker; the service is not
// running yet.
func newBundle(t *testing.T, awardDelay time.Duration) *bundle {
	t.Helper()
	broker := kafkatest.Start(t)
	b := &bundle{cfg: Config{Config: servicetest.Config(t, broker), AwardDelay: awardDelay}, broker: broker}
	b.in = servicetest.NewProducer(t, broker)
	b.out = servicetest.Collect(t, broker, contract.TopicLoyalty)
	return b
}

// setup runs one instance of the service (Run) on a fresh database and
// broker with the given award delay, and returns it with its base URL.
func setup(t *testing.T, awardDelay time.Duration) (*bundle, string) {
	t.Helper()
	b := newBundle(t, awardDelay)
	_, base := b.start(t)
	return b, base
}

// start runs an instance of the service on the bundle's database and
// broker, on a port of its own, and waits until it is ready. Instances
// share the consumer group.
func (b *bundle) start(t *testing.T) (*testenv.Running, string) {
	t.Helper()
	cfg := b.cfg
	cfg.HTTPAddr = testenv.FreeAddr(t)
	log := slog.New(slog.NewTextHandler(t.Output(), nil)).With("instance", cfg.HTTPAddr)
	run := testenv.Start(t, func(ctx context.Context) error { return Run(ctx, cfg, log) })
	base := "http://" + cfg.HTTPAddr
	servicetest.WaitReady(t, base)
	if b.pool == nil { // the database exists once an instance is ready
		b.pool = servicetest.Pool(t, b.cfg.Config)
	}
	b.settle(t)
	return run, base
}

// settle waits until the group's running instances own every partition of
// the topics loyalty consumes: it writes an event loyalty ignores to each
// partition and waits until the group's offsets are past them all, so a
// test's events are not held up by a rebalance still under way.
func (b *bundle) settle(t *testing.T) {
	t.Helper()
	cl, err := kgo.NewClient(b.broker.Opts(kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, contract.TopicPayments, contract.TopicOrders)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	topics.EachPartition(func(p kadm.PartitionDetail) {
		orderID := newID()
		var ev contract.Event = &contract.PaymentFailed{ // ignored by loyalty
			Envelope: contract.Envelope{OrderID: orderID}, CustomerID: "settle", Email: "ada@example.com", Reason: "declined",
		}
		if p.Topic == contract.TopicOrders {
			ev = &contract.OrderPlaced{ // ignored by loyalty
				Envelope: contract.Envelope{OrderID: orderID}, CustomerID: "settle", Email: "ada@example.com",
				Items:      []contract.Item{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 100}},
				TotalCents: 100, Currency: "EUR", PaymentToken: "tok_visa",
			}
		}
		m := ev.Meta()
		m.Event, m.Version, m.EventID, m.OccurredAt = ev.Name(), 1, newID(), time.Now().UTC()
		value, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: p.Topic, Partition: p.Partition, Key: []byte(orderID), Value: value})
	})
	if len(recs) == 0 {
		t.Fatal("settle: no partitions listed")
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// ProduceSync set each record's partition and offset.
	servicetest.WaitConsumed(t, b.broker, "orderflow-loyalty", recs...)
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// newCustomer returns a customer id no other test uses.
func newCustomer() string { return "cust-" + uuid.NewString()[:8] }

func captured(orderID, customerID string, amountCents int64) *contract.PaymentCaptured {
	return &contract.PaymentCaptured{
		Envelope:    contract.Envelope{OrderID: orderID},
		PaymentID:   "pay-" + orderID[:8],
		CustomerID:  customerID,
		Email:       "ada@example.com",
		AmountCents: amountCents,
		Currency:    "EUR",
		Items:       []contract.Item{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: amountCents}},
	}
}

func cancelled(orderID string) *contract.OrderCancelled {
	return &contract.OrderCancelled{Envelope: contract.Envelope{OrderID: orderID}, Reason: "customer_request"}
}

func refunded(orderID, customerID string, amountCents int64) *contract.PaymentRefunded {
	return &contract.PaymentRefunded{
		Envelope: contract.Envelope{OrderID: orderID}, PaymentID: "pay-" + orderID[:8], CustomerID: customerID,
		Email: "ada@example.com", AmountCents: amountCents, Reason: "out_of_stock",
	}
}

// waitHandled waits until the consumer has handled ev (its inbox row). Ev
// must have been produced, so its eventId is set. Records produced before
// ev on its partition (the same topic and order) are handled by then too.
func (b *bundle) waitHandled(t *testing.T, ev contract.Event) {
	t.Helper()
	id := ev.Meta().EventID
	testenv.WaitFor(t, 30*time.Second, "inbox row of "+ev.Name()+" "+id, func() bool {
		var ok bool
		err := b.pool.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM processed_events WHERE event_id = $1)", id).Scan(&ok)
		return err == nil && ok
	})
}

// waitPoints polls the customer's points until cond holds.
func waitPoints(t *testing.T, base, customerID string, cond func(pointsJSON) bool) pointsJSON {
	t.Helper()
	return servicetest.WaitJSON(t, base+"/customers/"+url.PathEscape(customerID)+"/points", cond)
}

// timerState is the award timer's state, "none" when there is none.
func (b *bundle) timerState(t *testing.T, orderID string) string {
	t.Helper()
	tm, err := timer.Get(context.Background(), b.pool, timerAward, orderID)
	if errors.Is(err, timer.ErrNotFound) {
		return "none"
	}
	if err != nil {
		t.Fatal(err)
	}
	return tm.State
}

// awardState is the order's award row's state, "none" when there is none.
func (b *bundle) awardState(t *testing.T, orderID string) string {
	t.Helper()
	var s string
	err := b.pool.QueryRow(context.Background(), "SELECT coalesce((SELECT state FROM awards WHERE order_id = $1), 'none')", orderID).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// outboxAwards counts the PointsAwarded loyalty wrote for orderID.
func (b *bundle) outboxAwards(t *testing.T, orderID string) int {
	t.Helper()
	var n int
	err := b.pool.QueryRow(context.Background(),
		"SELECT count(*) FROM outbox WHERE key = $1 AND event_type = 'PointsAwarded'", orderID).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pointsAwarded decodes the PointsAwarded records collected for orderID.
func (b *bundle) pointsAwarded(t *testing.T, orderID string) []contract.PointsAwarded {
	t.Helper()
	var out []contract.PointsAwarded
	for _, r := range b.out.Records(orderID) {
		if r.Envelope.Event != "PointsAwarded" {
			continue
		}
		var ev contract.PointsAwarded
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// awarded reports whether p lists exactly the given awards (orderId →
// points), nothing pending, and their sum as its points.
func awarded(p pointsJSON, want map[string]int64) bool {
	var sum int64
	for _, w := range want {
		sum += w
	}
	if p.Points != sum || len(p.Awards) != len(want) || len(p.Pending) != 0 {
		return false
	}
	for _, a := range p.Awards {
		if w, ok := want[a.OrderID.String()]; !ok || w != a.Points || a.AwardedAt.IsZero() {
			return false
		}
	}
	return true
}

// nothing reports whether p shows no points, awards or pending awards.
func nothing(p pointsJSON) bool { return p.Points == 0 && len(p.Awards) == 0 && len(p.Pending) == 0 }

// TestAwards drives awards that fire (a short delay) through Kafka.
func TestAwards(t *testing.T) {
	t.Parallel()
	b, base := setup(t, 50*time.Millisecond)

	tests := []struct {
		name string
		run  func(t *testing.T, id, cust string)
	}{
		{"capture awards floor(amountCents/100) once", func(t *testing.T, id, cust string) {
			b.in.Produce(t, captured(id, cust, 12_345))
			b.out.WaitLast(t, id, "PointsAwarded")
			evs := b.pointsAwarded(t, id)
			if len(evs) != 1 || evs[0].CustomerID != cust || evs[0].Points != 123 {
				t.Errorf("PointsAwarded %+v, want one for %s with 123 points", evs, cust)
			}
			rec := b.out.Records(id)[0]
			if rec.Headers["x-correlation-id"] != "test-"+id || rec.Headers["ce_source"] != "orderflow/loyalty" {
				t.Errorf("headers %v: want the capture's correlation id and ce_source orderflow/loyalty", rec.Headers)
			}
			waitPoints(t, base, cust, func(p pointsJSON) bool { return awarded(p, map[string]int64{id: 123}) })
			if s := b.timerState(t, id); s != timer.StateFired {
				t.Errorf("timer %s, want fired", s)
			}
		}},
		{"two orders of one customer add up", func(t *testing.T, id, cust string) {
			id2 := newID()
			b.in.Produce(t, captured(id, cust, 1_000))
			b.in.Produce(t, captured(id2, cust, 2_599))
			waitPoints(t, base, cust, func(p pointsJSON) bool { return awarded(p, map[string]int64{id: 10, id2: 25}) })
		}},
		{"duplicate captures award once", func(t *testing.T, id, cust string) {
			ev := captured(id, cust, 12_345)
			value := b.in.Produce(t, ev)
			b.in.ProduceRaw(t, ev, value)               // the same record again, same eventId
			b.in.Produce(t, captured(id, cust, 12_345)) // the same order under a new eventId
			b.out.WaitLast(t, id, "PointsAwarded")
			// An event on the captures' partition, once the award is
			// given (before, it would drop it): when it is handled, so
			// are the duplicates.
			marker := refunded(id, cust, 12_345)
			b.in.Produce(t, marker)
			b.waitHandled(t, marker)
			if n := b.outboxAwards(t, id); n != 1 {
				t.Errorf("outbox holds %d PointsAwarded, want 1", n)
			}
			if evs := b.pointsAwarded(t, id); len(evs) != 1 {
				t.Errorf("PointsAwarded %+v, want one", evs)
			}
			waitPoints(t, base, cust, func(p pointsJSON) bool { return awarded(p, map[string]int64{id: 123}) })
		}},
		{"cancelled after the award keeps the points", func(t *testing.T, id, cust string) {
			b.in.Produce(t, captured(id, cust, 500))
			b.out.WaitLast(t, id, "PointsAwarded")
			c := cancelled(id)
			b.in.Produce(t, c)
			b.waitHandled(t, c)
			r := refunded(id, cust, 500)
			b.in.Produce(t, r)
			b.waitHandled(t, r)
			if s := b.awardState(t, id); s != stateAwarded {
				t.Errorf("award %s, want awarded", s)
			}
			waitPoints(t, base, cust, func(p pointsJSON) bool { return awarded(p, map[string]int64{id: 5}) })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newID(), newCustomer())
		})
	}
}

// TestNoAward drives awards that must never be given, with a delay long
// enough that none fires during the test.
func TestNoAward(t *testing.T) {
	t.Parallel()
	b, base := setup(t, time.Hour)

	// dropped checks an award dropped while pending: its timer is
	// cancelled, so it can never fire.
	dropped := func(t *testing.T, id, cust string) {
		t.Helper()
		waitPoints(t, base, cust, nothing)
		if s := b.awardState(t, id); s != stateDropped {
			t.Errorf("award %s, want dropped", s)
		}
		if s := b.timerState(t, id); s != timer.StateCancelled {
			t.Errorf("timer %s, want cancelled", s)
		}
		if n := b.outboxAwards(t, id); n != 0 {
			t.Errorf("outbox holds %d PointsAwarded, want none", n)
		}
	}
	// pending waits until the order's award is pending.
	pending := func(t *testing.T, id, cust string, pts int64) {
		t.Helper()
		p := waitPoints(t, base, cust, func(p pointsJSON) bool { return len(p.Pending) == 1 })
		if p.Pending[0].OrderID.String() != id || p.Pending[0].Points != pts || p.Points != 0 || len(p.Awards) != 0 ||
			p.Pending[0].DueAt.Before(time.Now().Add(30*time.Minute)) {
			t.Errorf("points %+v, want only %s pending, %d points due in an hour", p, id, pts)
		}
	}

	tests := []struct {
		name string
		run  func(t *testing.T, id, cust string)
	}{
		{"OrderCancelled before due drops the award", func(t *testing.T, id, cust string) {
			b.in.Produce(t, captured(id, cust, 12_345))
			pending(t, id, cust, 123)
			c := cancelled(id)
			b.in.Produce(t, c)
			b.waitHandled(t, c)
			dropped(t, id, cust)
		}},
		{"PaymentRefunded before due drops the award", func(t *testing.T, id, cust string) {
			b.in.Produce(t, captured(id, cust, 12_345))
			pending(t, id, cust, 123)
			r := refunded(id, cust, 12_345)
			b.in.Produce(t, r)
			b.waitHandled(t, r)
			dropped(t, id, cust)
		}},
		{"OrderCancelled before the capture: the capture schedules nothing", func(t *testing.T, id, cust string) {
			c := cancelled(id)
			b.in.Produce(t, c)
			b.waitHandled(t, c)
			ev := captured(id, cust, 12_345)
			b.in.Produce(t, ev)
			b.waitHandled(t, ev)
			if s := b.awardState(t, id); s != stateDropped {
				t.Errorf("award %s, want dropped", s)
			}
			if s := b.timerState(t, id); s != "none" {
				t.Errorf("timer %s, want none", s)
			}
			waitPoints(t, base, cust, nothing)
		}},
		{"a payment under one unit earns nothing", func(t *testing.T, id, cust string) {
			ev := captured(id, cust, 99)
			b.in.Produce(t, ev)
			b.waitHandled(t, ev)
			if s := b.timerState(t, id); s != "none" {
				t.Errorf("timer %s, want none", s)
			}
			if s := b.awardState(t, id); s != "none" {
				t.Errorf("award %s, want none", s)
			}
			waitPoints(t, base, cust, nothing)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newID(), newCustomer())
		})
	}
}

func TestPointsGet(t *testing.T) {
	t.Parallel()
	_, base := setup(t, time.Hour)
	for _, cust := range []string{"never-seen", "a/b c"} {
		u := base + "/customers/" + url.PathEscape(cust) + "/points"
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		var raw map[string]json.RawMessage
		err = json.NewDecoder(resp.Body).Decode(&raw)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
		}
		got := fmt.Sprintf("%s %s %s %s", raw["customerId"], raw["points"], raw["awards"], raw["pending"])
		if want := fmt.Sprintf("%q 0 [] []", cust); got != want {
			t.Errorf("GET %s: %s, want %s", u, got, want)
		}
	}
}

// TestRestartFiresOnce stops the service before an award is due and
// starts a new instance on the same database after: the award is neither
// lost nor doubled.
func TestRestartFiresOnce(t *testing.T) {
	t.Parallel()
	// Long enough that the first instance stops before the award is due:
	// between the capture's commit and the stop the test only polls GET.
	const delay = 2 * time.Second
	b := newBundle(t, delay)
	first, base := b.start(t)
	id, cust := newID(), newCustomer()
	b.in.Produce(t, captured(id, cust, 4_200))
	waitPoints(t, base, cust, func(p pointsJSON) bool { return len(p.Pending) == 1 })
	first.Stop()
	first.Halt(t)

	tm, err := timer.Get(context.Background(), b.pool, timerAward, id)
	if err != nil {
		t.Fatal(err)
	}
	if tm.State != timer.StatePending {
		t.Fatalf("timer %s after the first instance stopped, want pending (was the machine too slow for a %s delay?)", tm.State, delay)
	}
	testenv.WaitFor(t, 30*time.Second, "the award's due time", func() bool { return time.Now().After(tm.DueAt) })

	_, base = b.start(t)
	b.out.WaitLast(t, id, "PointsAwarded")
	waitPoints(t, base, cust, func(p pointsJSON) bool { return awarded(p, map[string]int64{id: 42}) })
	if evs := b.pointsAwarded(t, id); len(evs) != 1 || evs[0].Points != 42 {
		t.Errorf("PointsAwarded %+v, want one with 42 points", evs)
	}
	if n := b.outboxAwards(t, id); n != 1 {
		t.Errorf("outbox holds %d PointsAwarded, want 1", n)
	}
}

// TestTwoInstancesAwardOnce runs two instances on one database, in one
// consumer group, and checks that each of many orders is awarded exactly
// once, whichever instance handled its capture and fired its timer.
func TestTwoInstancesAwardOnce(t *testing.T) {
	t.Parallel()
	const orders, customers = 200, 7
	b := newBundle(t, 1500*time.Millisecond)
	_, base := b.start(t)
	second, _ := b.start(t)

	custs := make([]string, customers)
	for i := range custs {
		custs[i] = newCustomer()
	}
	ids := make([]string, orders)
	custOf := make(map[string]string, orders)
	wantPoints := make(map[string]int64, customers)
	wantAwards := make(map[string]int, customers)
	evs := make([]contract.Event, orders)
	for i := range ids {
		ids[i] = newID()
		cust := custs[i%customers]
		custOf[ids[i]] = cust
		amount := int64(100 + 37*i)
		wantPoints[cust] += points(amount)
		wantAwards[cust]++
		evs[i] = captured(ids[i], cust, amount)
	}
	b.in.ProduceAll(t, evs...)

	testenv.WaitFor(t, 90*time.Second, fmt.Sprintf("%d awards", orders), func() bool {
		var n int
		err := b.pool.QueryRow(context.Background(), "SELECT count(*) FROM awards WHERE state = 'awarded'").Scan(&n)
		return err == nil && n == orders
	})
	testenv.WaitFor(t, 30*time.Second, "every PointsAwarded on the topic", func() bool {
		for _, id := range ids {
			if len(b.pointsAwarded(t, id)) == 0 {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		if n := b.outboxAwards(t, id); n != 1 {
			t.Errorf("order %s: outbox holds %d PointsAwarded, want 1", id, n)
		}
		if evs := b.pointsAwarded(t, id); len(evs) != 1 || evs[0].CustomerID != custOf[id] {
			t.Errorf("order %s: PointsAwarded %+v, want one for %s", id, evs, custOf[id])
		}
		if s := b.timerState(t, id); s != timer.StateFired {
			t.Errorf("order %s: timer %s, want fired", id, s)
		}
	}
	// The first instance stops right after the second, while partitions
	// may still be moving to it: its Run must still return.
	second.Halt(t)

	for _, cust := range custs {
		var got pointsJSON
		if code := servicetest.GetJSON(t, base+"/customers/"+cust+"/points", &got); code != http.StatusOK {
			t.Fatalf("GET points of %s: %d", cust, code)
		}
		var sum int64
		for _, a := range got.Awards {
			sum += a.Points
		}
		if got.Points != wantPoints[cust] || sum != wantPoints[cust] || len(got.Awards) != wantAwards[cust] {
			t.Errorf("customer %s: %d points, %d awards summing to %d; want %d points, %d awards",
				cust, got.Points, len(got.Awards), sum, wantPoints[cust], wantAwards[cust])
		}
	}
}
