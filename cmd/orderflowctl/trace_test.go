package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/devstack"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
)

// The whole stack as `make run` runs it (devstack.Run), on databases of
// its own prefix and the test broker: a captured order is traced from
// OrderPlaced to its shipping email, each hop in order with its Kafka
// offsets, the award (due in an hour) named as missing; a declined order's
// story is complete; an unknown id fails. Not parallel: the stack and the
// trace read the environment.
func TestTraceFollowsOrders(t *testing.T) {
	prefix := "orderflowctl_trace_" + randomSuffix() + "_"
	t.Cleanup(func() { // registered first, so it runs after the stack stopped
		for _, name := range services {
			if err := postgres.DropDatabase(context.Background(), pgtest.ServerURL(), prefix+name); err != nil {
				t.Logf("drop %s: %v", prefix+name, err)
			}
		}
	})
	broker := kafkatest.Start(t)
	env := broker.Env(t)
	maps.Copy(env, map[string]string{
		"DATABASE_PREFIX": prefix, "POSTGRES_URL": pgtest.ServerURL(),
		"POSTGRES_MAX_CONNS": "1", "WAREHOUSE_SHIP_DELAY": "300ms", "LOYALTY_AWARD_DELAY": "1h",
		"SMTP_ADDR": "", "LOG_LEVEL": "warn",
	})
	for k, v := range env {
		t.Setenv(k, v)
	}
	addrs := map[string]string{}
	for _, name := range services {
		addrs[name] = testenv.FreeAddr(t)
	}
	running := testenv.Start(t, func(ctx context.Context) error {
		return devstack.Run(ctx, &bytes.Buffer{}, devstack.Options{
			QueuePrefix: amqptest.Prefix(t), DataDir: t.TempDir(), Logs: t.Output(),
			Configure: func(name string, c *service.Config) { c.HTTPAddr = addrs[name] },
		})
	})
	t.Cleanup(running.Stop)
	for _, name := range services {
		servicetest.WaitReady(t, "http://"+addrs[name])
	}
	ordersURL := "http://" + addrs["orders"] + "/orders"

	// Captured: everything up to the shipping email, the points an hour
	// away.
	paid := place(t, ordersURL, "tok_visa")
	tr, out := waitTrace(t, paid, func(tr *trace) bool {
		return len(tr.Missing) == 1 && strings.HasPrefix(tr.Missing[0], "PointsAwarded")
	})
	p := keyPartition(paid, 12)
	placedAt := regexp.MustCompile(fmt.Sprintf(`OrderPlaced published orders\[%d\]@(\d+)`, p)).FindStringSubmatch(out)
	if placedAt == nil {
		t.Fatalf("no OrderPlaced record on orders[%d]:\n%s", p, out)
	}
	wantInOrder(t, tr, out,
		"orders outbox OrderPlaced written",
		fmt.Sprintf("OrderPlaced published orders[%d]@%s", p, placedAt[1]),
		fmt.Sprintf("payments handled OrderPlaced from orders[%d]@%s", p, placedAt[1]),
		"payments outbox PaymentCaptured written",
		fmt.Sprintf("PaymentCaptured published payments[%d]@", p),
		"warehouse handled PaymentCaptured from payments",
		"timer ship scheduled",
		"timer ship fired",
		"warehouse outbox OrderShipped written",
		fmt.Sprintf("OrderShipped published warehouse[%d]@", p),
		"email handled OrderShipped from warehouse",
		"email task shipped queued to ada@example.com, published to RabbitMQ",
		"email shipped sent",
	)
	for _, want := range []string{
		"email handled OrderPlaced", "orders handled PaymentCaptured", "loyalty handled PaymentCaptured",
		"timer award scheduled", "email confirmation sent", "orders handled OrderShipped", "orders handled PickScheduled",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no step %q:\n%s", want, out)
		}
	}
	if m := tr.Missing[0]; !strings.Contains(m, "25 points not awarded yet; its award timer is due at") {
		t.Errorf("missing %q; want the award timer due", m)
	}
	if !strings.Contains(out, "not happened yet (1):\n  - PointsAwarded") {
		t.Errorf("no missing section:\n%s", out)
	}

	// Declined: the payment failed and its email went; nothing is missing.
	declined := place(t, ordersURL, "tok_declined")
	tr, out = waitTrace(t, declined, func(tr *trace) bool { return len(tr.Missing) == 0 })
	wantInOrder(t, tr, out, "orders outbox OrderPlaced written", "payments handled OrderPlaced",
		"payments outbox PaymentFailed written", "orders handled PaymentFailed", "email payment_failed sent")
	if tr.Status != "payment_failed" || !strings.Contains(out, "nothing missing: the order's story is complete (payment_failed)") {
		t.Errorf("status %s:\n%s", tr.Status, out)
	}
	if strings.Contains(out, "PaymentCaptured") || strings.Contains(out, "timer") {
		t.Errorf("a declined order with a capture or a timer:\n%s", out)
	}

	// A record of the order that fails its schema: dead-lettered by both
	// of OrderPlaced's consumers, each named as missing.
	poison := fmt.Sprintf(`{"event":"OrderPlaced","version":1,"eventId":%q,"orderId":%q}`, uuid.NewString(), declined)
	cl, err := kgo.NewClient(broker.Opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec, err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "orders", Key: []byte(declined), Value: []byte(poison)}).First()
	if err != nil {
		t.Fatal(err)
	}
	at := fmt.Sprintf("orders[%d]@%d", rec.Partition, rec.Offset)
	tr, out = waitTrace(t, declined, func(tr *trace) bool {
		return strings.Count(strings.Join(tr.Missing, "\n"), "dead-lettered to") == 2
	})
	for _, want := range []string{
		"payments dead-lettered OrderPlaced from " + at + " at once to dlq.payments[",
		"email dead-lettered OrderPlaced from " + at,
		"payments has not handled OrderPlaced (" + at + "): dead-lettered to dlq.payments[",
		"a person must look (orderflowctl dlq show dlq.payments ",
		"email has not handled OrderPlaced (" + at + "): dead-lettered to dlq.email[",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}

	// --json carries the same steps.
	var js bytes.Buffer
	if err := run(context.Background(), []string{"trace", declined, "--json"}, &js, time.Now()); err != nil {
		t.Fatal(err)
	}
	var decoded trace
	err = json.Unmarshal(js.Bytes(), &decoded)
	if err != nil || decoded.OrderID != declined || len(decoded.Steps) < len(tr.Steps) || decoded.Steps[0].What != tr.Steps[0].What ||
		len(decoded.Missing) != len(tr.Missing) {
		t.Errorf("--json: %v; want the %d steps and %d missing of:\n%s\ngot:\n%s", err, len(tr.Steps), len(tr.Missing), out, js.String())
	}

	unknown := uuid.NewString()
	err = run(context.Background(), []string{"trace", unknown}, &bytes.Buffer{}, time.Now())
	if !errors.Is(err, errUnknownOrder) || !strings.Contains(err.Error(), unknown) || !strings.Contains(err.Error(), prefix+"orders") {
		t.Errorf("trace of an unknown order: %v", err)
	}
}

// place posts an order of two units of a SKU of its own, paid with token,
// and returns its id.
func place(t *testing.T, url, token string) string {
	t.Helper()
	body := fmt.Sprintf(`{"customerId":"c-trace","email":"ada@example.com","items":[{"sku":"trace-%s","quantity":2,"unitPriceCents":1250}],"currency":"EUR","paymentToken":%q}`,
		randomSuffix(), token)
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /orders: %s, %v", resp.Status, err)
	}
	return o.ID
}

// waitTrace traces the order until done holds, and returns the last trace
// and its text.
func waitTrace(t *testing.T, id string, done func(*trace) bool) (*trace, string) {
	t.Helper()
	var tr *trace
	var out bytes.Buffer
	deadline := time.Now().Add(60 * time.Second)
	for {
		cfg, err := traceConfigFromEnv()
		if err != nil {
			t.Fatal(err)
		}
		f, err := gatherTrace(context.Background(), cfg, id)
		if err != nil {
			t.Fatal(err)
		}
		tr = buildTrace(f, time.Now())
		out.Reset()
		printTrace(&out, tr)
		if len(tr.Unavailable) == 0 && done(tr) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s did not reach the expected state:\n%s", id, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("trace %s:\n%s", id, out.String())
	return tr, out.String()
}

// wantInOrder checks that steps starting with each of wants come in that
// order in the timeline.
func wantInOrder(t *testing.T, tr *trace, out string, wants ...string) {
	t.Helper()
	i := 0
	for _, s := range tr.Steps {
		if i < len(wants) && strings.HasPrefix(s.What, wants[i]) {
			i++
		}
	}
	if i < len(wants) {
		t.Errorf("step %q is not where expected (after %q) in:\n%s", wants[i], wants[max(i-1, 0)], out)
	}
}

// story builds the facts of an order with the given events, each written,
// published and handled by all its consumers, a millisecond apart.
type story struct {
	f   *facts
	now time.Time
}

func newStory(totalCents int64) *story {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	return &story{now: t0.Add(time.Hour), f: &facts{
		orderID: "0193a000-0000-7000-8000-00000000000a",
		order:   orderRow{status: "placed", totalCents: totalCents, createdAt: t0},
	}}
}

// event adds name, emitted on its topic; handledBy nil means by all its
// consumers.
func (s *story) event(name string, handledBy ...string) {
	n := len(s.f.records)
	at := s.f.order.createdAt.Add(time.Duration(n) * time.Millisecond)
	topic, _ := contract.TopicOf(name)
	id := fmt.Sprintf("0193a000-0000-7000-8000-%012d", n+100)
	s.f.outbox = append(s.f.outbox, outboxRow{service: topic, eventID: id, topic: topic, eventType: name, createdAt: at, published: true})
	s.f.records = append(s.f.records, kafkaRecord{topic: topic, partition: 3, offset: int64(n), at: at, event: name, eventID: id})
	if handledBy == nil {
		handledBy = consumers[name]
	}
	for _, svc := range handledBy {
		s.f.inbox = append(s.f.inbox, inboxRow{service: svc, eventID: id, topic: topic, partition: 3, offset: int64(n), at: at})
	}
}

func (s *story) email(kind, status string) {
	s.f.emails = append(s.f.emails, emailRow{kind: kind, status: status, to: "ada@example.com", createdAt: s.f.order.createdAt, updatedAt: s.f.order.createdAt})
}

// missing returns the trace's missing lines, joined.
func (s *story) missing() string { return strings.Join(buildTrace(s.f, s.now).Missing, "\n") }

// The expected story of each outcome: what a finished order of it lacks
// nothing of, and what each gap is called.
func TestTraceMissingSteps(t *testing.T) {
	// Shipped and awarded, all emails sent: complete.
	s := newStory(2500)
	for _, e := range []string{"OrderPlaced", "PaymentCaptured", "PickScheduled", "OrderShipped", "PointsAwarded"} {
		s.event(e)
	}
	s.email("confirmation", "sent")
	s.email("shipped", "sent")
	if m := s.missing(); m != "" {
		t.Errorf("complete order, missing:\n%s", m)
	}

	// Cancelled after the capture and the pick: the refund, the pick's
	// cancellation and the emails are missing; the points are not due.
	s = newStory(2500)
	for _, e := range []string{"OrderPlaced", "PaymentCaptured", "PickScheduled", "OrderCancelled"} {
		s.event(e)
	}
	s.email("confirmation", "dead")
	want := []string{
		"PickCancelled: the order was cancelled",
		"PaymentRefunded: the order was cancelled after its capture",
		"confirmation email: parked in email.send.dead",
	}
	m := s.missing()
	for _, w := range want {
		if !strings.Contains(m, w) {
			t.Errorf("cancelled order: no %q in:\n%s", w, m)
		}
	}
	if strings.Contains(m, "PointsAwarded") {
		t.Errorf("points expected of a cancelled order:\n%s", m)
	}

	// Out of stock: orders' OrderCancelled and the refund are missing.
	s = newStory(2500)
	for _, e := range []string{"OrderPlaced", "PaymentCaptured", "StockUnavailable"} {
		s.event(e)
	}
	s.email("confirmation", "sent")
	m = s.missing()
	for _, w := range []string{"OrderCancelled: stock unavailable", "PaymentRefunded"} {
		if !strings.Contains(m, w) {
			t.Errorf("out of stock: no %q in:\n%s", w, m)
		}
	}

	// Placed only: not published, so neither handled nor paid.
	s = newStory(2500)
	s.f.outbox = []outboxRow{{service: "orders", eventID: "0193a000-0000-7000-8000-000000000001", topic: "orders", eventType: "OrderPlaced", createdAt: s.f.order.createdAt}}
	m = s.missing()
	for _, w := range []string{"OrderPlaced: written to the orders outbox at 10:00:00.000, not published yet", "payment: no PaymentCaptured or PaymentFailed yet (payments' row: none)"} {
		if !strings.Contains(m, w) {
			t.Errorf("unpublished: no %q in:\n%s", w, m)
		}
	}

	// Published, not handled by email (lagging) nor payments (dead-lettered).
	s = newStory(2500)
	s.event("OrderPlaced", []string{}...)
	s.f.committed = map[string]map[string]int64{"email": {"orders": 0}, "payments": {"orders": 1}}
	s.f.dead = []kafkaRecord{{topic: "dlq.payments", partition: 3, offset: 7, event: "OrderPlaced", eventID: s.f.records[0].eventID,
		dlqOrigin: "orders[3]@0", dlqAttempt: "5", dlqError: "boom"}}
	m = s.missing()
	for _, w := range []string{
		"payments has not handled OrderPlaced (orders[3]@0): dead-lettered to dlq.payments[3]@7; a person must look (orderflowctl dlq show dlq.payments 3:7), then orderflowctl dlq replay dlq.payments",
		"email has not handled OrderPlaced (orders[3]@0): group orderflow-email is at offset 0, 1 records before it",
	} {
		if !strings.Contains(m, w) {
			t.Errorf("unhandled: no %q in:\n%s", w, m)
		}
	}
	if strings.Count(m, "dlq.payments") != 3 {
		t.Errorf("the dead letter named more than once:\n%s", m)
	}

	// Replayed from the DLQ and handled since: nothing missing of it; a
	// group past the record without a dead letter lost its inbox row.
	s.f.inbox = append(s.f.inbox, inboxRow{service: "payments", eventID: s.f.records[0].eventID, topic: "orders", partition: 3, offset: 1})
	s.f.committed["email"]["orders"] = 4
	m = s.missing()
	if strings.Contains(m, "dlq.payments") || !strings.Contains(m, "group orderflow-email is past it (offset 4): dead-lettered (see dlq.email), or its inbox row was pruned") {
		t.Errorf("replayed:\n%s", m)
	}
}

// Bad arguments fail before touching any database.
func TestTraceRejectsBadArguments(t *testing.T) {
	for args, want := range map[string]string{
		"trace":                 "trace takes one order id",
		"trace a b":             "trace takes one order id",
		"trace --bogus x":       "flag provided but not defined",
		"trace 12345":           `"12345" is not an order id`,
		"trace --json not-uuid": `"not-uuid" is not an order id`,
		"trace not-uuid --json": `"not-uuid" is not an order id`,
		"trace x --json y":      "trace takes one order id",
		"trace x x":             "trace takes one order id",
	} {
		err := run(context.Background(), strings.Fields(args), &bytes.Buffer{}, time.Now())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("run(%q) = %v; want an error containing %q", args, err, want)
		}
	}
}
