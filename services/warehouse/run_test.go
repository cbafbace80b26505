package warehouse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
	"github.com/orderflow/orderflow/pkg/events/timer"
)

// bundle is a running warehouse service with a producer for its input
// topics and collectors of what it emits and dead-letters.
type bundle struct {
	cfg    Config
	base   string
	broker *kafkatest.Broker
	pool   *pgxpool.Pool
	in     *servicetest.Producer
	out    *servicetest.Collector // "warehouse"
	dlq    *servicetest.Collector // "dlq.warehouse"
	run    *testenv.Running
}

// setup runs the whole service (Run) against a fresh database and a test
// broker, with 1000 units per unseen SKU and the given ship delay.
func setup(t *testing.T, shipDelay time.Duration) *bundle {
	t.Helper()
	b := setupStopped(t, shipDelay)
	b.start(t)
	return b
}

// setupStopped is setup without starting the service: its database is
// migrated, so a test can seed it and queue records before start.
func setupStopped(t *testing.T, shipDelay time.Duration) *bundle {
	t.Helper()
	broker := kafkatest.Start(t)
	b := &bundle{
		cfg:    Config{Config: servicetest.Config(t, broker), DefaultStock: 1000, ShipDelay: shipDelay},
		broker: broker,
	}
	b.base = "http://" + b.cfg.HTTPAddr
	b.pool = servicetest.Pool(t, b.cfg.Config)
	if err := Migrate(context.Background(), b.pool); err != nil {
		t.Fatal(err)
	}
	b.in = servicetest.NewProducer(t, broker)
	b.out = servicetest.Collect(t, broker, contract.TopicWarehouse)
	b.dlq = servicetest.Collect(t, broker, "dlq.warehouse")
	return b
}

// start runs the service and waits until it is ready.
func (b *bundle) start(t *testing.T) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	b.run = testenv.Start(t, func(ctx context.Context) error { return Run(ctx, b.cfg, log) })
	servicetest.WaitReady(t, b.base)
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// newSKU returns a SKU no other test uses, so tests sharing a service do
// not share stock.
func newSKU(name string) string { return name + "-" + uuid.NewString()[:8] }

func captured(orderID string, items ...contract.Item) *contract.PaymentCaptured {
	var total int64
	for i := range items {
		items[i].UnitPriceCents = 100
		total += int64(items[i].Quantity) * 100
	}
	return &contract.PaymentCaptured{
		Envelope:    contract.Envelope{OrderID: orderID},
		PaymentID:   "pay-" + orderID[:8],
		CustomerID:  "cust-1",
		Email:       "ada@example.com",
		AmountCents: total,
		Currency:    "EUR",
		Items:       items,
	}
}

func item(sku string, n int) contract.Item { return contract.Item{SKU: sku, Quantity: n} }

func cancelled(orderID string) *contract.OrderCancelled {
	return &contract.OrderCancelled{Envelope: contract.Envelope{OrderID: orderID}, Reason: "customer_request"}
}

// marker is an event warehouse ignores, on the partition of the order's
// PaymentCaptured (passMarker).
func marker(orderID string) *contract.PaymentRefunded {
	return &contract.PaymentRefunded{
		Envelope: contract.Envelope{OrderID: orderID}, PaymentID: "pay-1", CustomerID: "cust-1",
		Email: "ada@example.com", AmountCents: 100, Reason: "test_marker",
	}
}

// waitHandled waits until the consumer has handled ev (its inbox row).
func (b *bundle) waitHandled(t *testing.T, ev contract.Event) {
	t.Helper()
	id := ev.Meta().EventID
	testenv.WaitFor(t, 30*time.Second, "inbox row of "+ev.Name()+" "+id, func() bool {
		var ok bool
		err := b.pool.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM processed_events WHERE event_id = $1)", id).Scan(&ok)
		return err == nil && ok
	})
}

// passMarker produces an event warehouse ignores on the partition of the
// order's PaymentCaptured and waits until the group's offset is past it:
// every record produced before it for the order has been handled then.
func (b *bundle) passMarker(t *testing.T, orderID string) {
	t.Helper()
	servicetest.WaitConsumed(t, b.broker, "orderflow-warehouse", b.in.ProduceAt(t, marker(orderID)))
}

// outboxEvents lists the events warehouse wrote for orderID, in order.
func (b *bundle) outboxEvents(t *testing.T, orderID string) []string {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), "SELECT event_type FROM outbox WHERE key = $1 ORDER BY txid, id", orderID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// shipped decodes the order's events, PickScheduled then OrderShipped,
// and checks that OrderShipped names the pick, has a tracking id and
// carries the correlation id of the order's PaymentCaptured (through the
// ship timer).
func (b *bundle) shipped(t *testing.T, orderID string) (contract.PickScheduled, contract.OrderShipped) {
	t.Helper()
	recs := b.out.Records(orderID)
	var scheduled contract.PickScheduled
	var shipped contract.OrderShipped
	if len(recs) != 2 {
		t.Fatalf("order %s: %d events, want PickScheduled and OrderShipped", orderID, len(recs))
	}
	if err := json.Unmarshal(recs[0].Value, &scheduled); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(recs[1].Value, &shipped); err != nil {
		t.Fatal(err)
	}
	if shipped.PickID != scheduled.PickID || !strings.HasPrefix(shipped.TrackingID, "TRK-") {
		t.Errorf("order %s: PickScheduled %+v, OrderShipped %+v", orderID, scheduled, shipped)
	}
	if c := recs[1].Headers["x-correlation-id"]; c != "test-"+orderID {
		t.Errorf("order %s: OrderShipped x-correlation-id %q, want %q", orderID, c, "test-"+orderID)
	}
	return scheduled, shipped
}

func (b *bundle) shipment(t *testing.T, orderID string, cond func(shipmentJSON) bool) shipmentJSON {
	t.Helper()
	return servicetest.WaitJSON(t, b.base+"/shipments/"+orderID, cond)
}

func (b *bundle) inventory(t *testing.T, sku string) inventoryJSON {
	t.Helper()
	var inv inventoryJSON
	if code := servicetest.GetJSON(t, b.base+"/inventory/"+sku, &inv); code != http.StatusOK {
		t.Fatalf("GET /inventory/%s: %d", sku, code)
	}
	return inv
}

func (b *bundle) waitInventory(t *testing.T, sku string, available, reserved int64) {
	t.Helper()
	servicetest.WaitJSON(t, b.base+"/inventory/"+sku, func(v inventoryJSON) bool {
		return v.Available == available && v.Reserved == reserved
	})
}

// putStock seeds sku with n available units.
func (b *bundle) putStock(t *testing.T, sku string, n int64) {
	t.Helper()
	code, body := b.put(t, sku, fmt.Sprintf(`{"available": %d}`, n))
	if code != http.StatusOK {
		t.Fatalf("PUT /inventory/%s: %d %s", sku, code, body)
	}
}

func (b *bundle) put(t *testing.T, sku, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, b.base+"/inventory/"+sku, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}

func (b *bundle) timerState(t *testing.T, orderID string) string {
	t.Helper()
	tm, err := timer.Get(context.Background(), b.pool, timerShip, orderID)
	if errors.Is(err, timer.ErrNotFound) {
		return "none"
	}
	if err != nil {
		t.Fatal(err)
	}
	return tm.State
}

// noDeadLetters fails t when any of the orders' records was dead-lettered.
// Call it after their outcomes were seen: a record is dead-lettered before
// the consumer moves past it.
func (b *bundle) noDeadLetters(t *testing.T, orderIDs ...string) {
	t.Helper()
	for _, id := range orderIDs {
		if got := b.dlq.Names(id); len(got) > 0 {
			t.Errorf("order %s: dead-lettered %v", id, got)
		}
	}
}

// TestFlows drives each flow of docs/design.md through Kafka against a service that
// ships 50 ms after scheduling, and checks what GET /shipments and
// GET /inventory show and what warehouse emits.
func TestFlows(t *testing.T) {
	t.Parallel()
	b := setup(t, 50*time.Millisecond)

	tests := []struct {
		name string
		run  func(t *testing.T, id string)
	}{
		{"captured, scheduled, shipped", func(t *testing.T, id string) {
			mug, tee := newSKU("MUG"), newSKU("TEE")
			b.in.Produce(t, captured(id, item(mug, 2), item(tee, 1), item(mug, 1)))
			got := b.out.WaitLast(t, id, "OrderShipped")
			if fmt.Sprint(got) != "[PickScheduled OrderShipped]" {
				t.Fatalf("emitted %v", got)
			}
			scheduled, shipped := b.shipped(t, id)
			if pid, err := uuid.Parse(scheduled.PickID); err != nil || pid.Version() != 7 {
				t.Errorf("pickId %q, want a UUIDv7", scheduled.PickID)
			}
			sh := b.shipment(t, id, func(s shipmentJSON) bool { return s.Status == statusShipped })
			if sh.TrackingID == nil || *sh.TrackingID != shipped.TrackingID || sh.PickID == nil || sh.PickID.String() != scheduled.PickID {
				t.Errorf("shipment %+v, want tracking %s pick %s", sh, shipped.TrackingID, scheduled.PickID)
			}
			wantItems := []lineJSON{{mug, 3}, {tee, 1}}
			if !slices.Equal(sh.Items, wantItems) {
				t.Errorf("items %v, want %v", sh.Items, wantItems)
			}
			b.waitInventory(t, mug, 997, 0)
			b.waitInventory(t, tee, 999, 0)
			if s := b.timerState(t, id); s != timer.StateFired {
				t.Errorf("ship timer %s, want fired", s)
			}
		}},
		{"out of stock reserves nothing", func(t *testing.T, id string) {
			scarce, plenty := newSKU("SCARCE"), newSKU("PLENTY")
			b.putStock(t, scarce, 1)
			b.in.Produce(t, captured(id, item(plenty, 3), item(scarce, 2)))
			got := b.out.WaitLast(t, id, "StockUnavailable")
			if len(got) != 1 {
				t.Errorf("emitted %v", got)
			}
			var ev contract.StockUnavailable
			if err := json.Unmarshal(b.out.Records(id)[0].Value, &ev); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ev.SKUs, []string{scarce}) {
				t.Errorf("skus %v, want [%s]", ev.SKUs, scarce)
			}
			sh := b.shipment(t, id, func(s shipmentJSON) bool { return s.Status == statusUnavailable })
			if sh.PickID != nil || sh.TrackingID != nil || len(sh.Items) != 2 {
				t.Errorf("shipment %+v", sh)
			}
			b.waitInventory(t, scarce, 1, 0)
			b.waitInventory(t, plenty, 1000, 0)
			if s := b.timerState(t, id); s != "none" {
				t.Errorf("ship timer %s, want none", s)
			}
		}},
		{"last unit goes to one of two orders", func(t *testing.T, first string) {
			sku := newSKU("LAST")
			b.putStock(t, sku, 1)
			second := newID()
			b.in.ProduceAll(t, captured(first, item(sku, 1)), captured(second, item(sku, 1)))
			outcome := func(id string) string {
				var last string
				testenv.WaitFor(t, 30*time.Second, "outcome of "+id, func() bool {
					names := b.out.Names(id)
					if len(names) == 0 {
						return false
					}
					last = names[len(names)-1]
					return last == "OrderShipped" || last == "StockUnavailable"
				})
				return last
			}
			got := []string{outcome(first), outcome(second)}
			slices.Sort(got)
			if fmt.Sprint(got) != "[OrderShipped StockUnavailable]" {
				t.Errorf("outcomes %v, want one shipped and one unavailable", got)
			}
			b.waitInventory(t, sku, 0, 0)
			b.noDeadLetters(t, first, second)
		}},
		{"duplicate record reserves once", func(t *testing.T, id string) {
			sku := newSKU("DUP")
			ev := captured(id, item(sku, 4))
			value := b.in.Produce(t, ev)
			b.in.ProduceRaw(t, ev, value)
			b.passMarker(t, id)
			b.out.WaitLast(t, id, "OrderShipped")
			if got := b.outboxEvents(t, id); fmt.Sprint(got) != "[PickScheduled OrderShipped]" {
				t.Errorf("outbox %v", got)
			}
			b.waitInventory(t, sku, 996, 0)
		}},
		{"cancel after shipping changes nothing", func(t *testing.T, id string) {
			sku := newSKU("LATE")
			b.in.Produce(t, captured(id, item(sku, 1)))
			b.out.WaitLast(t, id, "OrderShipped")
			c := cancelled(id)
			b.in.Produce(t, c)
			b.waitHandled(t, c)
			if got := b.outboxEvents(t, id); fmt.Sprint(got) != "[PickScheduled OrderShipped]" {
				t.Errorf("outbox %v", got)
			}
			b.shipment(t, id, func(s shipmentJSON) bool { return s.Status == statusShipped })
			b.waitInventory(t, sku, 999, 0)
		}},
		{"cancel before capture: the capture reserves nothing", func(t *testing.T, id string) {
			sku := newSKU("EARLY")
			b.in.Produce(t, cancelled(id))
			sh := b.shipment(t, id, func(s shipmentJSON) bool { return s.Status == statusCancelled })
			if sh.PickID != nil || len(sh.Items) != 0 || sh.CancelReason != "customer_request" {
				t.Errorf("shipment %+v", sh)
			}
			b.in.Produce(t, captured(id, item(sku, 5)))
			b.passMarker(t, id)
			if got := b.outboxEvents(t, id); len(got) != 0 {
				t.Errorf("outbox %v, want nothing", got)
			}
			b.shipment(t, id, func(s shipmentJSON) bool { return s.Status == statusCancelled && s.PickID == nil })
			b.waitInventory(t, sku, 1000, 0)
			if s := b.timerState(t, id); s != "none" {
				t.Errorf("ship timer %s, want none", s)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newID())
		})
	}
}

// TestSlowShipping runs against a service whose picks ship only after an
// hour: what happens while picks are scheduled.
func TestSlowShipping(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Hour)

	t.Run("cancel before shipping returns the stock", func(t *testing.T) {
		t.Parallel()
		id, sku := newID(), newSKU("BOOK")
		b.in.Produce(t, captured(id, item(sku, 3)))
		b.out.WaitLast(t, id, "PickScheduled")
		b.waitInventory(t, sku, 997, 3)
		sh := b.shipment(t, id, func(s shipmentJSON) bool { return s.Status == statusScheduled })
		if sh.TrackingID != nil || sh.PickID == nil {
			t.Errorf("scheduled shipment %+v", sh)
		}
		if s := b.timerState(t, id); s != timer.StatePending {
			t.Errorf("ship timer %s, want pending", s)
		}

		b.in.Produce(t, cancelled(id))
		got := b.out.WaitLast(t, id, "PickCancelled")
		if fmt.Sprint(got) != "[PickScheduled PickCancelled]" {
			t.Errorf("emitted %v", got)
		}
		var ev contract.PickCancelled
		if err := json.Unmarshal(b.out.Records(id)[1].Value, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.PickID != sh.PickID.String() {
			t.Errorf("PickCancelled pickId %s, want %s", ev.PickID, sh.PickID)
		}
		b.shipment(t, id, func(s shipmentJSON) bool { return s.Status == statusCancelled && s.TrackingID == nil })
		b.waitInventory(t, sku, 1000, 0)
		// Cancelled, so it never fires (timer.Cancel's guarantee).
		if s := b.timerState(t, id); s != timer.StateCancelled {
			t.Errorf("ship timer %s, want cancelled", s)
		}
		// A second cancellation changes nothing.
		c := cancelled(id)
		b.in.Produce(t, c)
		b.waitHandled(t, c)
		if got := b.outboxEvents(t, id); fmt.Sprint(got) != "[PickScheduled PickCancelled]" {
			t.Errorf("outbox %v", got)
		}
		b.waitInventory(t, sku, 1000, 0)
	})

	// Many orders over a few shared SKUs, each order's lines in random
	// order, all produced at once so the consumer handles them in batches
	// on several partitions: every order is decided, nothing is
	// oversold, no reservation is lost or doubled, and nothing deadlocks
	// into the dead-letter topic.
	t.Run("concurrent orders over shared SKUs", func(t *testing.T) {
		t.Parallel()
		const orders = 50
		skus := []string{newSKU("A"), newSKU("B"), newSKU("C"), newSKU("D"), newSKU("E")}
		initial := map[string]int64{skus[0]: 25, skus[1]: 25, skus[2]: 25, skus[3]: 1000, skus[4]: 1000}
		for _, sku := range skus[:3] { // D and E are first seen in the orders
			b.putStock(t, sku, initial[sku])
		}
		ids := make([]string, orders)
		evs := make([]contract.Event, orders)
		items := make(map[string][]contract.Item, orders)
		for i := range ids {
			ids[i] = newID()
			picked := rand.Perm(len(skus))[:2+rand.IntN(2)]
			var its []contract.Item
			for _, k := range picked {
				its = append(its, item(skus[k], 1+rand.IntN(3)))
			}
			items[ids[i]] = its
			evs[i] = captured(ids[i], its...)
		}
		b.in.ProduceAll(t, evs...)

		reserved := map[string]int64{}
		scheduled := 0
		for _, id := range ids {
			var last string
			testenv.WaitFor(t, 60*time.Second, "outcome of "+id, func() bool {
				names := b.out.Names(id)
				if len(names) == 0 {
					return false
				}
				last = names[len(names)-1]
				return true
			})
			switch last {
			case "PickScheduled":
				scheduled++
				for _, it := range items[id] {
					reserved[it.SKU] += int64(it.Quantity)
				}
			case "StockUnavailable":
			default:
				t.Errorf("order %s: %s", id, last)
			}
		}
		t.Logf("%d of %d orders scheduled", scheduled, orders)
		for _, sku := range skus {
			inv := b.inventory(t, sku)
			if inv.Reserved != reserved[sku] || inv.Available != initial[sku]-reserved[sku] || inv.Available < 0 {
				t.Errorf("%s: %+v, want reserved %d of %d", sku, inv, reserved[sku], initial[sku])
			}
		}
		for _, id := range ids {
			if n := len(b.outboxEvents(t, id)); n != 1 {
				t.Errorf("order %s: %d events in the outbox, want 1", id, n)
			}
		}
		b.noDeadLetters(t, ids...)
	})
}

// A pick scheduled before a restart ships once after it: the ship timer is
// in the database, not in the process.
func TestShipAfterRestart(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Second)
	id, sku := newID(), newSKU("RESTART")
	b.in.Produce(t, captured(id, item(sku, 2)))
	b.out.WaitLast(t, id, "PickScheduled")
	b.run.Halt(t)
	if s := b.timerState(t, id); s != timer.StatePending {
		// Only on a machine slow enough to take a second to stop.
		t.Logf("ship timer %s before the restart: the restart proves less this time", s)
	}

	b.start(t)
	b.out.WaitLast(t, id, "OrderShipped")
	b.shipment(t, id, func(s shipmentJSON) bool { return s.Status == statusShipped && s.TrackingID != nil })
	b.waitInventory(t, sku, 998, 0)
	if got := b.outboxEvents(t, id); fmt.Sprint(got) != "[PickScheduled OrderShipped]" {
		t.Errorf("outbox %v", got)
	}
	if got := b.out.Names(id); fmt.Sprint(got) != "[PickScheduled OrderShipped]" {
		t.Errorf("emitted %v", got)
	}
	if s := b.timerState(t, id); s != timer.StateFired {
		t.Errorf("ship timer %s, want fired", s)
	}
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Hour)

	t.Run("unknown shipment", func(t *testing.T) {
		for _, id := range []string{uuid.NewString(), "not-a-uuid"} {
			resp, err := http.Get(b.base + "/shipments/" + id)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("GET /shipments/%s = %d %s", id, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
		}
	})

	t.Run("unseen SKU has the default stock", func(t *testing.T) {
		sku := newSKU("UNSEEN")
		if inv := b.inventory(t, sku); inv != (inventoryJSON{SKU: sku, Available: 1000}) {
			t.Errorf("inventory %+v", inv)
		}
	})

	t.Run("seed stock", func(t *testing.T) {
		sku := newSKU("SEED")
		code, body := b.put(t, sku, `{"available": 7}`)
		var inv inventoryJSON
		if err := json.Unmarshal([]byte(body), &inv); code != http.StatusOK || err != nil || inv != (inventoryJSON{SKU: sku, Available: 7}) {
			t.Errorf("PUT: %d %s", code, body)
		}
		b.putStock(t, sku, 0)
		if inv := b.inventory(t, sku); inv.Available != 0 {
			t.Errorf("after PUT 0: %+v", inv)
		}
		// An escaped SKU is the SKU it encodes.
		b.putStock(t, "A%2FB-"+sku, 3)
		if inv := b.inventory(t, "A%2FB-"+sku); inv.SKU != "A/B-"+sku || inv.Available != 3 {
			t.Errorf("escaped SKU: %+v", inv)
		}
	})

	tests := []struct {
		name, sku, body string
		status          int
		field           string // named in errors, for 422
	}{
		{"negative", "X", `{"available": -1}`, http.StatusUnprocessableEntity, "available"},
		{"fraction", "X", `{"available": 1.5}`, http.StatusUnprocessableEntity, "available"},
		{"string", "X", `{"available": "7"}`, http.StatusUnprocessableEntity, "available"},
		{"missing", "X", `{}`, http.StatusUnprocessableEntity, "available"},
		{"unknown field", "X", `{"available": 1, "reserved": 0}`, http.StatusUnprocessableEntity, "reserved"},
		{"SKU too long", strings.Repeat("S", 65), `{"available": 1}`, http.StatusUnprocessableEntity, "sku"},
		{"malformed", "X", `{"available":`, http.StatusBadRequest, ""},
		{"null", "X", `null`, http.StatusBadRequest, ""},
		{"array", "X", `[1]`, http.StatusBadRequest, ""},
		{"too large", "X", `{"available": 1` + strings.Repeat(" ", 5000) + `}`, http.StatusRequestEntityTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run("PUT "+tt.name, func(t *testing.T) {
			code, body := b.put(t, tt.sku, tt.body)
			if code != tt.status {
				t.Fatalf("PUT %s: %d %s, want %d", tt.body, code, body, tt.status)
			}
			var p struct {
				Status int `json:"status"`
				Errors []struct {
					Field string `json:"field"`
				} `json:"errors"`
			}
			if err := json.Unmarshal([]byte(body), &p); err != nil || p.Status != tt.status {
				t.Fatalf("problem %s: %v", body, err)
			}
			if tt.field != "" && !slices.ContainsFunc(p.Errors, func(e struct {
				Field string `json:"field"`
			}) bool {
				return e.Field == tt.field
			}) {
				t.Errorf("errors %s do not name %s", body, tt.field)
			}
		})
	}
	if inv := b.inventory(t, "X"); inv.Available != 1000 {
		t.Errorf("refused PUTs changed X: %+v", inv)
	}
}
