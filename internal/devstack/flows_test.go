package devstack

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/service"
)

// stack is a running `make run` stack: each service's base URL by name.
type stack map[string]string

// startStack runs the whole stack as `make run` does, with env set, each
// service on its own fresh database and free port, with pools of 2 (and
// the consumer's and relay's), and
// the embedded broker on a free port. It stops when t ends.
func startStack(t *testing.T, env map[string]string) stack {
	t.Helper()
	return startStackOn(t, env, stackDatabases(t), 2)
}

// stackDatabases creates a fresh database for each service of the stack
// and returns their names by service.
func stackDatabases(t *testing.T) map[string]string {
	t.Helper()
	databases := map[string]string{}
	for _, u := range units {
		databases[u.name] = pgtest.DatabaseName(t, pgtest.NewDatabase(t))
	}
	return databases
}

// startStackOn is startStack on the given databases, with pools of
// maxConns (0: the services' defaults); adjust, when given, changes the
// stack's options last.
func startStackOn(t *testing.T, env map[string]string, databases map[string]string, maxConns int32,
	adjust ...func(*Options)) stack {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	t.Setenv("KAFKA_BROKERS", "") // the stack's own embedded broker
	addrs := map[string]string{}
	for _, u := range units {
		addrs[u.name] = testenv.FreeAddr(t)
	}
	running := testenv.Start(t, func(ctx context.Context) error {
		opts := Options{
			KafkaAddr:   "127.0.0.1:0",
			QueuePrefix: amqptest.Prefix(t),
			DataDir:     t.TempDir(),
			Logs:        t.Output(),
			Configure: func(name string, c *service.Config) {
				c.HTTPAddr, c.Database = addrs[name], databases[name]
				if maxConns > 0 {
					c.MaxConns = maxConns
				}
				c.RetryBackoff = 5 * time.Millisecond
			},
		}
		for _, a := range adjust {
			a(&opts)
		}
		return Run(ctx, io.Discard, opts)
	})
	t.Cleanup(running.Stop)
	s := stack{}
	for name, addr := range addrs {
		s[name] = "http://" + addr
		testenv.WaitFor(t, 60*time.Second, name+" ready", func() bool {
			resp, err := http.Get(s[name] + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	return s
}

// order is the body of POST /orders.
type order struct {
	CustomerID   string `json:"customerId"`
	Email        string `json:"email"`
	Items        []item `json:"items"`
	Currency     string `json:"currency"`
	PaymentToken string `json:"paymentToken"`
}

type item struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unitPriceCents"`
}

// newOrder is an order of quantity units of a SKU of its own.
func newOrder(token string, quantity int, unitPriceCents int64) order {
	tag := uuid.NewString()[:8]
	return order{
		CustomerID: "c-" + tag, Email: "ada@example.com", Currency: "EUR", PaymentToken: token,
		Items: []item{{SKU: "sku-" + tag, Quantity: quantity, UnitPriceCents: unitPriceCents}},
	}
}

type orderView struct {
	ID            string  `json:"id"`
	Status        string  `json:"status"`
	CancelReason  *string `json:"cancelReason"`
	PointsAwarded int64   `json:"pointsAwarded"`
	TotalCents    int64   `json:"totalCents"`
	Timeline      []struct {
		Event   string `json:"event"`
		EventID string `json:"eventId"`
		Service string `json:"service"`
	} `json:"timeline"`
}

func (o orderView) events() []string {
	var names []string
	for _, e := range o.Timeline {
		names = append(names, e.Event)
	}
	return names
}

type paymentView struct {
	Status      string `json:"status"`
	Reason      string `json:"reason"`
	AmountCents int64  `json:"amountCents"`
	Attempts    int    `json:"attempts"`
}

type shipmentView struct {
	Status     string  `json:"status"`
	TrackingID *string `json:"trackingId"`
}

type inventoryView struct {
	SKU       string `json:"sku"`
	Available int64  `json:"available"`
	Reserved  int64  `json:"reserved"`
}

type pointsView struct {
	CustomerID string            `json:"customerId"`
	Points     int64             `json:"points"`
	Awards     []json.RawMessage `json:"awards"`
	Pending    []json.RawMessage `json:"pending"`
}

// send sends body as JSON, with headers (name, value, ...) set.
func send(t *testing.T, method, url string, body any, headers ...string) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// place posts o and returns the new order's id.
func (s stack) place(t *testing.T, o order, headers ...string) string {
	t.Helper()
	resp, body := send(t, http.MethodPost, s["orders"]+"/orders", o, headers...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /orders: %s %s", resp.Status, body)
	}
	var v orderView
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	return v.ID
}

func (s stack) waitOrder(t *testing.T, id string, cond func(orderView) bool) orderView {
	t.Helper()
	return servicetest.WaitJSON(t, s["orders"]+"/orders/"+id, cond)
}

func has(events ...string) func(orderView) bool {
	return func(o orderView) bool {
		for _, e := range events {
			if !slices.Contains(o.events(), e) {
				return false
			}
		}
		return true
	}
}

func count(names []string, name string) int {
	n := 0
	for _, s := range names {
		if s == name {
			n++
		}
	}
	return n
}

func status(s string) func(orderView) bool { return func(o orderView) bool { return o.Status == s } }

// Every flow of docs/design.md through the real stack, over HTTP only, with short
// delays: ship 100 ms, award 2 s (longer than the out-of-stock chain takes,
// so a refund cancels the award before it is due).
// emailView is an email as GET /emails shows it.
type emailView struct {
	Kind   string `json:"kind"`
	Status string `json:"status"`
	To     string `json:"to"`
}

// waitEmails waits until the order's emails are want: "kind:status"
// entries, sorted, space-separated.
func (s stack) waitEmails(t *testing.T, orderID, want string) {
	t.Helper()
	servicetest.WaitJSON(t, s["email"]+"/emails?orderId="+orderID, func(es []emailView) bool {
		var got []string
		for _, e := range es {
			got = append(got, e.Kind+":"+e.Status)
		}
		slices.Sort(got)
		return strings.Join(got, " ") == want
	})
}

func TestFlows(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole stack")
	}
	s := startStack(t, map[string]string{
		"WAREHOUSE_SHIP_DELAY": "100ms",
		"LOYALTY_AWARD_DELAY":  "2s",
		"FRAUD_LIMIT_CENTS":    "1000000",
	})

	t.Run("happy path to shipped with points", func(t *testing.T) {
		o := newOrder("tok_visa", 2, 1250)
		id := s.place(t, o)
		v := s.waitOrder(t, id, func(v orderView) bool { return v.Status == "shipped" && v.PointsAwarded == 25 })
		want := []string{"OrderPlaced", "PaymentCaptured", "PickScheduled", "OrderShipped", "PointsAwarded"}
		for _, e := range want {
			if count(v.events(), e) != 1 {
				t.Errorf("timeline %v: want one %s", v.events(), e)
			}
		}
		services := map[string]string{"OrderPlaced": "orders", "PaymentCaptured": "payments", "PickScheduled": "warehouse",
			"OrderShipped": "warehouse", "PointsAwarded": "loyalty"}
		for _, e := range v.Timeline {
			if services[e.Event] != e.Service {
				t.Errorf("timeline entry %s from %q, want %q", e.Event, e.Service, services[e.Event])
			}
		}
		p := servicetest.WaitJSON(t, s["payments"]+"/payments/"+id, func(p paymentView) bool { return p.Status == "captured" })
		if p.AmountCents != 2500 {
			t.Errorf("payment %+v", p)
		}
		sh := servicetest.WaitJSON(t, s["warehouse"]+"/shipments/"+id, func(v shipmentView) bool { return v.Status == "shipped" })
		if sh.TrackingID == nil || *sh.TrackingID == "" {
			t.Errorf("shipment %+v has no tracking id", sh)
		}
		servicetest.WaitJSON(t, s["warehouse"]+"/inventory/"+o.Items[0].SKU, func(v inventoryView) bool { return v.Available == 998 && v.Reserved == 0 })
		servicetest.WaitJSON(t, s["loyalty"]+"/customers/"+o.CustomerID+"/points", func(v pointsView) bool { return v.Points == 25 && len(v.Awards) == 1 })

		s.waitEmails(t, id, "confirmation:sent shipped:sent")

		// Cancel after shipping: 409, and nothing changes.
		resp, body := send(t, http.MethodPost, s["orders"]+"/orders/"+id+"/cancel", nil)
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("cancel after shipping: %s %s, want 409", resp.Status, body)
		}
		if v := s.waitOrder(t, id, status("shipped")); slices.Contains(v.events(), "OrderCancelled") {
			t.Errorf("timeline after a refused cancel: %v", v.events())
		}
	})

	t.Run("declined", func(t *testing.T) {
		id := s.place(t, newOrder("tok_declined", 1, 1000))
		s.waitOrder(t, id, status("payment_failed"))
		servicetest.WaitJSON(t, s["payments"]+"/payments/"+id, func(p paymentView) bool { return p.Status == "failed" && p.Reason == "declined" })
		if code := getStatus(t, s["warehouse"]+"/shipments/"+id); code != http.StatusNotFound {
			t.Errorf("shipment of a declined order: %d, want 404", code)
		}
		s.waitEmails(t, id, "payment_failed:sent")
	})

	t.Run("fraud", func(t *testing.T) {
		id := s.place(t, newOrder("tok_visa", 1, 1_000_001))
		s.waitOrder(t, id, status("payment_failed"))
		servicetest.WaitJSON(t, s["payments"]+"/payments/"+id, func(p paymentView) bool { return p.Status == "failed" && p.Reason == "fraud_suspected" })
	})

	t.Run("flaky token captures exactly once", func(t *testing.T) {
		id := s.place(t, newOrder("tok_flaky", 1, 5000))
		v := s.waitOrder(t, id, func(v orderView) bool { return v.Status == "shipped" && v.PointsAwarded == 50 })
		if n := count(v.events(), "PaymentCaptured"); n != 1 {
			t.Errorf("timeline %v: %d captures", v.events(), n)
		}
		p := servicetest.WaitJSON(t, s["payments"]+"/payments/"+id, func(p paymentView) bool { return p.Status == "captured" })
		if p.Attempts != 3 {
			t.Errorf("payment attempts %d, want 3 (two transient failures, then success)", p.Attempts)
		}
	})

	t.Run("out of stock is refunded and cancelled", func(t *testing.T) {
		o := newOrder("tok_visa", 2, 700)
		resp, body := send(t, http.MethodPut, s["warehouse"]+"/inventory/"+o.Items[0].SKU, map[string]int{"available": 1})
		if resp.StatusCode/100 != 2 {
			t.Fatalf("seed stock: %s %s", resp.Status, body)
		}
		id := s.place(t, o)
		v := s.waitOrder(t, id, func(v orderView) bool {
			return v.Status == "cancelled" && has("PaymentRefunded", "StockUnavailable")(v)
		})
		if v.CancelReason == nil || *v.CancelReason != "out_of_stock" {
			t.Errorf("cancelReason %v, want out_of_stock", v.CancelReason)
		}
		servicetest.WaitJSON(t, s["payments"]+"/payments/"+id, func(p paymentView) bool { return p.Status == "refunded" && p.Reason == "out_of_stock" })
		servicetest.WaitJSON(t, s["warehouse"]+"/shipments/"+id, func(v shipmentView) bool { return v.Status == "unavailable" })
		s.waitEmails(t, id, "confirmation:sent refunded:sent")
		servicetest.WaitJSON(t, s["warehouse"]+"/inventory/"+o.Items[0].SKU, func(v inventoryView) bool { return v.Available == 1 && v.Reserved == 0 })
		servicetest.WaitJSON(t, s["loyalty"]+"/customers/"+o.CustomerID+"/points", func(v pointsView) bool { return len(v.Pending) == 0 })
		time.Sleep(2500 * time.Millisecond) // past the award's due time: it must not fire
		pts := servicetest.WaitJSON(t, s["loyalty"]+"/customers/"+o.CustomerID+"/points", func(pointsView) bool { return true })
		if pts.Points != 0 || len(pts.Awards) != 0 {
			t.Errorf("points after an out-of-stock order: %+v", pts)
		}
	})

	t.Run("cancel of an unknown order", func(t *testing.T) {
		if resp, body := send(t, http.MethodPost, s["orders"]+"/orders/"+uuid.NewString()+"/cancel", nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("cancel unknown: %s %s", resp.Status, body)
		}
	})
}

// Cancel before shipping, with ship and award an hour away: the payment is
// refunded, the pick cancelled and its stock returned, and no points are
// awarded.
func TestCancelBeforeShipping(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole stack")
	}
	s := startStack(t, map[string]string{"WAREHOUSE_SHIP_DELAY": "1h", "LOYALTY_AWARD_DELAY": "1h"})
	o := newOrder("tok_visa", 3, 999)
	id := s.place(t, o)
	s.waitOrder(t, id, has("PaymentCaptured", "PickScheduled"))
	servicetest.WaitJSON(t, s["loyalty"]+"/customers/"+o.CustomerID+"/points", func(v pointsView) bool { return len(v.Pending) == 1 })

	resp, body := send(t, http.MethodPost, s["orders"]+"/orders/"+id+"/cancel", nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("cancel: %s %s", resp.Status, body)
	}
	v := s.waitOrder(t, id, has("OrderCancelled", "PaymentRefunded", "PickCancelled"))
	if v.Status != "cancelled" || v.PointsAwarded != 0 {
		t.Errorf("order after cancel: %+v", v)
	}
	servicetest.WaitJSON(t, s["payments"]+"/payments/"+id, func(p paymentView) bool { return p.Status == "refunded" })
	servicetest.WaitJSON(t, s["warehouse"]+"/shipments/"+id, func(v shipmentView) bool { return v.Status == "cancelled" })
	servicetest.WaitJSON(t, s["warehouse"]+"/inventory/"+o.Items[0].SKU, func(v inventoryView) bool { return v.Available == 1000 && v.Reserved == 0 })
	pts := servicetest.WaitJSON(t, s["loyalty"]+"/customers/"+o.CustomerID+"/points", func(v pointsView) bool { return len(v.Pending) == 0 })
	if pts.Points != 0 {
		t.Errorf("points after cancel: %+v", pts)
	}

	// A second cancel is accepted and changes nothing.
	if resp, body := send(t, http.MethodPost, s["orders"]+"/orders/"+id+"/cancel", nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("second cancel: %s %s", resp.Status, body)
	}
	if n := count(s.waitOrder(t, id, status("cancelled")).events(), "OrderCancelled"); n != 1 {
		t.Errorf("%d OrderCancelled in the timeline, want 1", n)
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
