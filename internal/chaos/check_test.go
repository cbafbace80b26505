package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	neturl "net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/devstack"
	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/smtptest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/service"
)

// The checker against the whole stack under a little load: it converges
// with every order at its end and every poison dead-lettered wherever it
// must be, and then reports each violation made on purpose.
func TestCheck(t *testing.T) {
	top, urls := startStack(t)
	ctx := t.Context()

	// Poisons: malformed records of every event topic (each consumer of the
	// topic dead-letters them at once) and a message that is not a task.
	poison := []Poison{
		{Topic: contract.TopicOrders, Value: []byte("not json at all")},
		{Topic: contract.TopicPayments, Value: []byte(`{"event":"PaymentCaptured"}`)},
		{Topic: contract.TopicWarehouse, Value: []byte(`{"event":`)},
		{Topic: contract.TopicLoyalty, Value: []byte{0, 1, 2, 'x'}},
		{Topic: "", Value: []byte("not a task")},
	}
	cl := kafkaClient(t, top.Brokers)
	for _, p := range poison[:4] {
		produce(t, cl, &kgo.Record{Topic: p.Topic, Key: []byte(uuid.NewString()), Value: p.Value})
	}
	amqptest.Publish(t, top.QueuePrefix+"email", "send", amqp.Publishing{MessageId: "poison-" + uuid.NewString(), Body: poison[4].Value})

	var out bytes.Buffer
	sum, err := loadgen.Run(ctx, loadgen.Config{
		OrdersURL: urls["orders"], WarehouseURL: urls["warehouse"],
		Rate: 20, Duration: 2 * time.Second, Seed: 56, Out: &out, // 40 orders of every outcome (28 happy)
	})
	if err != nil {
		t.Fatal(err)
	}
	accepted := readAccepted(t, &out)
	if len(accepted) != sum.Accepted || len(accepted) < 30 {
		t.Fatalf("accepted %d orders, summary says %d", len(accepted), sum.Accepted)
	}
	outcomes := map[loadgen.Outcome]int{}
	for _, a := range accepted {
		outcomes[a.Outcome]++
	}
	t.Logf("accepted %d orders: %v", len(accepted), outcomes)
	exp := Expectation{Orders: accepted, Poison: poison}

	rep := waitReport(t, 120*time.Second, "convergence", func() Report { return Check(ctx, top, exp) }, Report.Converged)
	t.Logf("converged: %v", rep.Counts)
	emails := 2*(outcomes[loadgen.Happy]+outcomes[loadgen.Flaky]+outcomes[loadgen.OutOfStock]) +
		outcomes[loadgen.Declined] + outcomes[loadgen.Fraud]
	for name, want := range map[string]int{
		"orders": len(accepted), "complete": len(accepted), "missing": 0, "violations": 0, "pending": 0,
		"dead letters": deadLetters(poison), "poison": len(poison),
		"consumer lag": 0, "outbox pending": 0, "queued messages": 0,
	} {
		if got := rep.Counts[name]; got != want {
			t.Errorf("Counts[%q] = %d, want %d", name, got, want)
		}
	}
	for name, least := range map[string]int{"events": 2 * len(accepted), "emails sent": emails, "emails accepted": emails} {
		if got := rep.Counts[name]; got < least {
			t.Errorf("Counts[%q] = %d, want at least %d", name, got, least)
		}
	}
	if rep.Counts["emails sent"] != rep.Counts["email tasks"] || rep.Counts["emails accepted"] != rep.Counts["emails sent"] {
		t.Errorf("email tasks %d, sent %d, accepted %d: want all equal",
			rep.Counts["email tasks"], rep.Counts["emails sent"], rep.Counts["emails accepted"])
	}
	for o, n := range outcomes {
		if got := rep.Counts["complete "+string(o)]; got != n {
			t.Errorf("Counts[complete %s] = %d, want %d", o, got, n)
		}
	}

	// Violations on purpose: a stranger in a dead-letter topic, a second
	// capture (a new eventId) of a completed order, a poison never
	// injected, an accepted order that does not exist.
	produce(t, cl, &kgo.Record{Topic: "dlq.orders", Key: []byte("stranger"), Value: []byte(`{"stranger":true}`)})
	var happy string
	for _, a := range accepted {
		if a.Outcome == loadgen.Happy {
			happy = a.OrderID
			break
		}
	}
	produce(t, cl, recaptured(t, cl, happy))
	ghost := uuid.NewString()
	exp.Orders = append(exp.Orders, Accepted{OrderID: ghost, Outcome: loadgen.Happy})
	exp.Poison = append(exp.Poison, Poison{Topic: contract.TopicWarehouse, Value: []byte("never injected")})

	want := []struct {
		violation bool
		parts     []string
	}{
		{true, []string{"dlq.orders", `{\"stranger\":true}`}},
		{true, []string{"order " + happy, "PaymentCaptured 2 times"}},
		{true, []string{"order " + ghost, "not in the orders database"}},
		{true, []string{"order " + happy, "2 confirmation email tasks"}},
		{false, []string{"poison #5", "not yet in " + dlqsOf(contract.TopicWarehouse)}},
	}
	found := func(r Report) bool {
		for _, w := range want {
			lines := r.Pending
			if w.violation {
				lines = r.Violations
			}
			if !hasLine(lines, w.parts...) {
				return false
			}
		}
		return true
	}
	rep = waitReport(t, 60*time.Second, "the violations made on purpose", func() Report { return Check(ctx, top, exp) }, found)
	t.Logf("violations: %q; pending: %q", rep.Violations, rep.Pending)
	if rep.Converged() {
		t.Error("Converged with violations")
	}
}

// A source that does not answer is a Pending line, not a panic or a
// violation, and the call ends with its context.
func TestCheckSourcesUnavailable(t *testing.T) {
	closed := testenv.FreeAddr(t) // nothing listens there
	top := Topology{
		Databases: map[string]string{"orders": "postgres://postgres@" + closed + "/x?sslmode=disable"},
		Brokers:   []string{closed}, AMQPURL: "amqp://guest:guest@" + closed + "/",
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	start := time.Now()
	r := Check(ctx, top, Expectation{Orders: []Accepted{{OrderID: uuid.NewString(), Outcome: loadgen.Happy}}})
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Check took %s with a 3 s context", took)
	}
	for _, want := range []string{"source unavailable: orders database", "source unavailable: email database: not in the topology",
		"source unavailable: kafka", "source unavailable: rabbitmq"} {
		if !hasLine(r.Pending, want) {
			t.Errorf("no pending line %q in %q", want, r.Pending)
		}
	}
	t.Logf("pending: %q", r.Pending)
	if len(r.Violations) > 0 || r.Converged() {
		t.Errorf("violations %q, converged %v: want none, not converged", r.Violations, r.Converged())
	}
}

// Each end the outcomes allow, judged on facts made up.
func TestJudgeOrder(t *testing.T) {
	at := func(s int) pgtype.Timestamptz {
		return pgtype.Timestamptz{Time: time.Unix(1_700_000_000+int64(s), 0), Valid: true}
	}
	sent := func(kinds ...string) []emailRow {
		var es []emailRow
		for _, k := range kinds {
			es = append(es, emailRow{taskID: k + "-task", kind: k, status: "sent"})
		}
		return es
	}
	smtp := map[string]int{"confirmation-task": 1, "shipped-task": 1, "refunded-task": 1, "payment_failed-task": 1}
	happy := facts{
		order:   orderRow{status: "shipped", points: 12, totalCents: 1234},
		payment: &paymentRow{status: "captured"}, shipment: "shipped",
		award:  &awardRow{state: "awarded", points: 12, awardedAt: at(5)},
		emails: sent("confirmation", "shipped"), smtp: smtp,
	}
	cancelled := facts{
		order:   orderRow{status: "cancelled", cancelReason: "customer_request", totalCents: 1234},
		payment: &paymentRow{status: "refunded", reason: "customer_request"}, shipment: "cancelled",
		award:  &awardRow{state: "dropped", points: 12, cancelledAt: at(1)},
		emails: sent("confirmation", "refunded"), smtp: smtp,
	}
	with := func(f facts, change func(*facts)) facts {
		if f.payment != nil {
			p := *f.payment
			f.payment = &p
		}
		if f.award != nil {
			a := *f.award
			f.award = &a
		}
		f.emails = append([]emailRow(nil), f.emails...)
		change(&f)
		return f
	}
	tests := []struct {
		name    string
		outcome loadgen.Outcome
		f       facts
		state   string
		line    string
		races   []string
	}{
		{"happy at its end", loadgen.Happy, happy, "reached", "", nil},
		{"happy worth no points", loadgen.Happy, with(happy, func(f *facts) { f.order.totalCents, f.order.points, f.award = 99, 0, nil }), "reached", "", nil},
		{"happy still paid", loadgen.Flaky, with(happy, func(f *facts) { f.order.status, f.shipment, f.emails = "paid", "scheduled", f.emails[:1] }), "pending", "status paid, shipment scheduled", nil},
		{"happy orders not told of the points", loadgen.Happy, with(happy, func(f *facts) { f.order.points = 0 }), "pending", "pointsAwarded 0 in orders", nil},
		{"happy email queued", loadgen.Happy, with(happy, func(f *facts) { f.emails[1].status = "queued" }), "pending", "shipped email queued", nil},
		{"happy cancelled", loadgen.Happy, with(happy, func(f *facts) { f.order.status, f.order.cancelReason = "cancelled", "customer_request" }), "broken", "status cancelled (customer_request)", nil},
		{"email sent twice is not this rule", loadgen.Happy, with(happy, func(f *facts) { f.smtp = map[string]int{"confirmation-task": 2, "shipped-task": 1} }), "reached", "", nil},
		{"email sent, never accepted", loadgen.Happy, with(happy, func(f *facts) { f.smtp = map[string]int{"confirmation-task": 1} }), "broken", "shipped email shipped-task recorded sent, never accepted", nil},
		{"declined shipped", loadgen.Declined, facts{
			order: orderRow{status: "payment_failed"}, payment: &paymentRow{status: "failed", reason: "declined"},
			shipment: "shipped", emails: sent("payment_failed"), smtp: smtp,
		}, "broken", "shipment shipped", nil},
		{"fraud failed as declined", loadgen.Fraud, facts{
			order: orderRow{status: "payment_failed"}, payment: &paymentRow{status: "failed", reason: "declined"},
			emails: sent("payment_failed"), smtp: smtp,
		}, "broken", "payment failed (declined)", nil},
		{"shipping email for an order not shipped", loadgen.Cancelled, with(cancelled, func(f *facts) { f.emails = append(f.emails, sent("shipped")...) }),
			"broken", "shipped email without a shipped shipment", nil},
		{"cancelled at its end", loadgen.Cancelled, cancelled, "reached", "", nil},
		{"cancelled before payment", loadgen.Cancelled, facts{
			order:   orderRow{status: "cancelled", cancelReason: "customer_request", totalCents: 1234},
			payment: &paymentRow{status: "failed", reason: "cancelled_before_payment"}, shipment: "cancelled",
		}, "reached", "", nil},
		{"cancelled, shipped first", loadgen.Cancelled, with(cancelled, func(f *facts) {
			f.shipment = "shipped"
			f.emails = append(f.emails, sent("shipped")...)
		}), "reached", "", []string{raceShipped}},
		{"cancelled, points awarded first", loadgen.Cancelled, with(cancelled, func(f *facts) {
			f.award.state, f.award.awardedAt, f.order.points = "awarded", at(0), 12
		}), "reached", "", []string{racePoints}},
		{"cancelled, points awarded after", loadgen.Cancelled, with(cancelled, func(f *facts) {
			f.award.state, f.award.awardedAt, f.order.points = "awarded", at(2), 12
		}), "broken", "12 points awarded after loyalty knew of the cancellation", nil},
		{"out of stock with points pending", loadgen.OutOfStock, facts{
			order:   orderRow{status: "cancelled", cancelReason: "out_of_stock", totalCents: 500},
			payment: &paymentRow{status: "refunded", reason: "out_of_stock"}, shipment: "unavailable",
			award: &awardRow{state: "pending", points: 5}, emails: sent("confirmation", "refunded"), smtp: smtp,
		}, "pending", "award pending", nil},
		{"unconfirmed cancel shipped", loadgen.CancelUnconfirmed, happy, "reached", "", nil},
		{"unconfirmed cancel cancelled", loadgen.CancelUnconfirmed, cancelled, "reached", "", nil},
		{"unconfirmed cancel paid", loadgen.CancelUnconfirmed, with(happy, func(f *facts) { f.order.status, f.shipment, f.emails = "paid", "scheduled", f.emails[:1] }),
			"pending", "shipped: status paid", nil},
		{"unconfirmed cancel failed", loadgen.CancelUnconfirmed, facts{
			order: orderRow{status: "payment_failed"}, payment: &paymentRow{status: "failed", reason: "declined"},
		}, "broken", "cancelled: status payment_failed", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, line, races := judgeOrder(tt.outcome, tt.f)
			if state != tt.state || !strings.Contains(line, tt.line) || !slices.Equal(races, tt.races) {
				t.Errorf("judgeOrder = %s, %q, races %q; want %s, %q, races %q", state, line, races, tt.state, tt.line, tt.races)
			}
		})
	}
}

// startStack runs the whole `make run` stack (internal/devstack) on fresh
// databases, free ports, the stack's own embedded broker, a queue prefix
// of its own and an SMTP server of the test's, with short business
// delays. It returns the checker's topology and each service's base URL.
func startStack(t *testing.T) (Topology, map[string]string) {
	t.Helper()
	mail := smtptest.Start(t)
	for k, v := range map[string]string{
		"KAFKA_BROKERS": "", "SMTP_ADDR": mail.Addr, "DATABASE_PREFIX": "", "LOG_LEVEL": "warn",
		"LOYALTY_AWARD_DELAY": "2s", "WAREHOUSE_SHIP_DELAY": "500ms", "FRAUD_LIMIT_CENTS": "1000000",
	} {
		t.Setenv(k, v)
	}
	top := Topology{Databases: map[string]string{}, AMQPURL: amqptest.URL(), QueuePrefix: amqptest.Prefix(t),
		SMTP: mail, FraudLimitCents: 1_000_000}
	databases, addrs := map[string]string{}, map[string]string{}
	for _, name := range devstack.Services() {
		dbURL := pgtest.NewDatabase(t)
		parsed, err := neturl.Parse(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		top.Databases[name], databases[name], addrs[name] = dbURL, strings.TrimPrefix(parsed.Path, "/"), testenv.FreeAddr(t)
	}
	banner := &testenv.SyncBuffer{}
	testenv.Start(t, func(ctx context.Context) error {
		return devstack.Run(ctx, banner, devstack.Options{
			KafkaAddr:   "127.0.0.1:0",
			QueuePrefix: top.QueuePrefix,
			DataDir:     t.TempDir(),
			Logs:        t.Output(),
			Configure: func(name string, c *service.Config) {
				c.HTTPAddr, c.Database, c.MaxConns = addrs[name], databases[name], 2 // the server is shared: 100 connections
				c.RetryBackoff = 5 * time.Millisecond
			},
		})
	})
	urls := map[string]string{}
	for name, addr := range addrs {
		urls[name] = "http://" + addr
		testenv.WaitFor(t, 60*time.Second, name+" ready", func() bool { return servicetest.Ready(t, urls[name]) == nil })
	}
	m := regexp.MustCompile(`kafka +\[([0-9.:]+)\]`).FindStringSubmatch(banner.String())
	if m == nil {
		t.Fatalf("no broker address in the banner:\n%s", banner)
	}
	top.Brokers = []string{m[1]}
	return top, urls
}

// waitReport calls check until done holds, failing t with the last report
// after timeout.
func waitReport(t *testing.T, timeout time.Duration, what string, check func() Report, done func(Report) bool) Report {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := check()
		if done(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s; last report:\nviolations: %s\npending: %s\ncounts: %v", what, timeout,
				strings.Join(r.Violations, "\n  "), strings.Join(r.Pending, "\n  "), r.Counts)
		}
		time.Sleep(time.Second)
	}
}

func hasLine(lines []string, parts ...string) bool {
	for _, l := range lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// readAccepted reads loadgen's Out: "<orderId>\t<outcome>" lines.
func readAccepted(t *testing.T, out *bytes.Buffer) []Accepted {
	t.Helper()
	var as []Accepted
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		id, outcome, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			t.Fatalf("loadgen line %q", sc.Text())
		}
		as = append(as, Accepted{OrderID: id, Outcome: loadgen.Outcome(outcome)})
	}
	return as
}

func kafkaClient(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produce(t *testing.T, cl *kgo.Client, r *kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(t.Context(), r).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", r.Topic, err)
	}
}

// recaptured is the order's PaymentCaptured record again with a new
// eventId (and ce_id): the same effect announced twice.
func recaptured(t *testing.T, cl *kgo.Client, orderID string) *kgo.Record {
	t.Helper()
	rd, err := kgo.NewClient(append(cl.Opts(), kgo.ConsumeTopics(contract.TopicPayments), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		var found *kgo.Record
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var ev map[string]any
			if json.Unmarshal(r.Value, &ev) != nil || ev["event"] != "PaymentCaptured" || ev["orderId"] != orderID {
				return
			}
			id := uuid.NewString()
			ev["eventId"] = id
			value, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			found = &kgo.Record{Topic: r.Topic, Key: r.Key, Value: value}
			for _, h := range r.Headers {
				if h.Key == "ce_id" {
					h.Value = []byte(id)
				}
				found.Headers = append(found.Headers, h)
			}
		})
		if found != nil {
			return found
		}
	}
	t.Fatalf("no PaymentCaptured of order %s in topic payments", orderID)
	return nil
}

// deadLetters is how many dead letters the poisons make: one per consumer
// of a poisoned topic (the registry's), one per poisoned queue message.
func deadLetters(poison []Poison) int {
	n := 0
	for _, p := range poison {
		if p.Topic == "" {
			n++
		} else {
			n += len(consumersOf[p.Topic])
		}
	}
	return n
}

// dlqsOf names the dead-letter topics of topic's consumers, as the report
// lists them.
func dlqsOf(topic string) string {
	var names []string
	for _, c := range consumersOf[topic] {
		names = append(names, "dlq."+c)
	}
	return strings.Join(names, ", ")
}
