package email

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/smtptest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

// bundle is a running email service with its SMTP server, a producer of
// its input topics and its own queues on the local RabbitMQ.
type bundle struct {
	cfg    Config
	base   string
	smtp   *smtpserver
	in     *servicetest.Producer
	topo   rabbit.Topology
	broker *kafkatest.Broker
	run    *testenv.Running
}

type smtpserver = smtptest.Server

func setup(t *testing.T, mod func(*Config)) *bundle {
	t.Helper()
	broker := kafkatest.Start(t)
	srv := smtptest.Start(t)
	topo := amqptest.Topology(t, 50*time.Millisecond, 100*time.Millisecond, 200*time.Millisecond)
	cfg := Config{
		Config:      servicetest.Config(t, broker),
		SMTPAddr:    srv.Addr,
		RetryDelays: topo.RetryDelays,
		QueuePrefix: strings.TrimSuffix(topo.Exchange, "email"),
		MaxAttempts: 4,
	}
	if mod != nil {
		mod(&cfg)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	run := testenv.Start(t, func(ctx context.Context) error { return Run(ctx, cfg, log) })
	b := &bundle{cfg: cfg, base: "http://" + cfg.HTTPAddr, smtp: srv, in: servicetest.NewProducer(t, broker), topo: topo, broker: broker, run: run}
	servicetest.WaitReady(t, b.base)
	return b
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func placed(orderID, to string) *contract.OrderPlaced {
	return &contract.OrderPlaced{
		Envelope: contract.Envelope{OrderID: orderID}, CustomerID: "c-1", Email: to,
		Items:      []contract.Item{{SKU: "sku-1", Quantity: 1, UnitPriceCents: 2500}},
		TotalCents: 2500, Currency: "EUR", PaymentToken: "tok_visa",
	}
}

func captured(orderID, to string) *contract.PaymentCaptured {
	return &contract.PaymentCaptured{
		Envelope: contract.Envelope{OrderID: orderID}, PaymentID: newID(), CustomerID: "c-1", Email: to,
		AmountCents: 2500, Currency: "EUR", Items: []contract.Item{{SKU: "sku-1", Quantity: 1, UnitPriceCents: 2500}},
	}
}

func shipped(orderID string) *contract.OrderShipped {
	return &contract.OrderShipped{Envelope: contract.Envelope{OrderID: orderID}, PickID: newID(), TrackingID: "TRK-42"}
}

// emails waits until GET /emails?orderId= satisfies cond.
func (b *bundle) emails(t *testing.T, orderID string, cond func([]emailJSON) bool) []emailJSON {
	t.Helper()
	return servicetest.WaitJSON(t, b.base+"/emails?orderId="+orderID, cond)
}

// sentTo returns the accepted messages to addr.
func (b *bundle) sentTo(addr string) []smtptest.Message {
	var out []smtptest.Message
	for _, m := range b.smtp.Messages() {
		if len(m.To) == 1 && m.To[0] == addr {
			out = append(out, m)
		}
	}
	return out
}

// statuses lists kind:status of es, sorted (events of different topics
// arrive in no fixed order).
func statuses(es []emailJSON) string {
	var s []string
	for _, e := range es {
		s = append(s, e.Kind+":"+e.Status)
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

// parts reads a multipart/alternative message's parts' content types.
func parts(t *testing.T, m smtptest.Message) []string {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(m.Data)))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("content type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return types
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, strings.Split(p.Header.Get("Content-Type"), ";")[0])
	}
}

// One confirmation per paid order and one shipping email per shipped
// order, multipart text and HTML, with the order's correlation id and a
// Message-ID from the task id; a payment failure and a refund each get
// theirs; a record delivered twice sends nothing twice.
func TestHappyPath(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, to := newID(), "ada-"+newID()[:8]+"@example.com"
	b.in.Produce(t, placed(id, to))
	c := captured(id, to)
	value := b.in.Produce(t, c)
	b.in.ProduceRaw(t, c, value) // the same record again
	b.in.Produce(t, shipped(id))
	es := b.emails(t, id, func(es []emailJSON) bool { return statuses(es) == "confirmation:sent shipped:sent" })

	msgs := b.sentTo(to)
	if len(msgs) != 2 {
		t.Fatalf("%d messages to %s, want 2", len(msgs), to)
	}
	ids := map[string]bool{}
	for _, e := range es {
		ids["<"+e.TaskID.String()+"@orderflow.local>"] = true
	}
	shipping := 0
	for _, m := range msgs {
		if got := m.Header.Get("X-Correlation-ID"); got != "test-"+id {
			t.Errorf("X-Correlation-ID %q", got)
		}
		if got := m.Header.Get("Message-ID"); !ids[got] {
			t.Errorf("Message-ID %q, want one of %v", got, ids)
		}
		if got := parts(t, m); fmt.Sprint(got) != "[text/plain text/html]" {
			t.Errorf("parts %v", got)
		}
		if strings.Contains(m.Header.Get("Subject"), "on its way") && strings.Contains(string(m.Data), "TRK-42") {
			shipping++
		}
	}
	if shipping != 1 {
		t.Errorf("%d shipping emails with the tracking number, want 1", shipping)
	}

	failedID, refundedID := newID(), newID()
	b.in.Produce(t, &contract.PaymentFailed{Envelope: contract.Envelope{OrderID: failedID}, CustomerID: "c-2", Email: to, Reason: "declined"})
	// The refund's event has no currency: the email takes it from the
	// order's OrderPlaced, handled first here (on another topic, it could
	// come later, and the amount would show without it).
	servicetest.WaitConsumed(t, b.broker, "orderflow-email", b.in.ProduceAt(t, placed(refundedID, to)))
	b.in.Produce(t, &contract.PaymentRefunded{Envelope: contract.Envelope{OrderID: refundedID}, PaymentID: newID(),
		CustomerID: "c-1", Email: to, AmountCents: 2500, Reason: "customer_request"})
	b.emails(t, failedID, func(es []emailJSON) bool { return statuses(es) == "payment_failed:sent" })
	b.emails(t, refundedID, func(es []emailJSON) bool { return statuses(es) == "refunded:sent" })
	metrics := getBody(t, b.base+"/metrics")
	for _, want := range []string{
		`orderflow_amqp_queue_messages{queue="` + b.topo.Queue + `"} 0`,
		`orderflow_amqp_queue_messages{queue="` + b.topo.DeadQueue() + `"} 0`,
		`orderflow_amqp_oldest_message_age_seconds{queue="` + b.topo.Queue + `"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	msgs = b.sentTo(to)
	refunds := 0
	for _, m := range msgs {
		if strings.HasPrefix(m.Header.Get("Subject"), "Refund") && strings.Contains(string(m.Data), "25.00 EUR") {
			refunds++
		}
	}
	if len(msgs) != 4 || refunds != 1 {
		t.Errorf("%d messages, %d refunds of 25.00 EUR; want 4 and 1", len(msgs), refunds)
	}
}

// An OrderShipped seen before any event naming the order's address: its
// email waits for the address and then goes, once.
func TestShippedBeforeRecipient(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, to := newID(), "late-"+newID()[:8]+"@example.com"
	b.in.Produce(t, shipped(id))
	b.emails(t, id, func(es []emailJSON) bool { return len(es) == 0 }) // nothing to send yet
	b.in.Produce(t, captured(id, to))
	b.emails(t, id, func(es []emailJSON) bool { return statuses(es) == "confirmation:sent shipped:sent" })
	b.in.Produce(t, placed(id, to)) // a later event naming the address queues nothing more
	time.Sleep(300 * time.Millisecond)
	if msgs := b.sentTo(to); len(msgs) != 2 {
		t.Errorf("%d emails to %s, want 2", len(msgs), to)
	}
}

// An SMTP server answering 451 for a while: the task is retried with
// growing delays and sent exactly once; 550: the task is parked in the dead
// queue with the error; garbage published to the exchange is parked at
// once; the work queue drains.
func TestRetryAndDead(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.smtp.SetRule(func(to []string, _ mail.Header, seen int) *smtp.SMTPError {
		switch {
		case strings.HasPrefix(to[0], "busy-") && seen < 2:
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		case strings.HasPrefix(to[0], "gone-"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
		}
		return nil
	})
	busy, gone := newID(), newID()
	busyTo, goneTo := "busy-"+busy[:8]+"@example.com", "gone-"+gone[:8]+"@example.com"
	b.in.Produce(t, captured(busy, busyTo))
	b.in.Produce(t, captured(gone, goneTo))

	es := b.emails(t, busy, func(es []emailJSON) bool { return statuses(es) == "confirmation:sent" })
	if es[0].Attempts != 3 || !strings.Contains(es[0].LastError, "451") {
		t.Errorf("busy email %+v, want sent on attempt 3 after a 451", es[0])
	}
	if n := len(b.sentTo(busyTo)); n != 1 {
		t.Errorf("busy email accepted %d times", n)
	}
	es = b.emails(t, gone, func(es []emailJSON) bool { return statuses(es) == "confirmation:dead" })
	if es[0].Attempts != 1 || !strings.Contains(es[0].LastError, "550") {
		t.Errorf("gone email %+v, want dead after one 550", es[0])
	}

	amqptest.Publish(t, b.topo.Exchange, b.topo.RoutingKey, amqp.Publishing{MessageId: "garbage", Body: []byte("{not json")})
	dead := map[string]amqp.Delivery{}
	for len(dead) < 2 {
		m, ok := amqptest.Get(t, b.topo.DeadQueue(), 10*time.Second)
		if !ok {
			t.Fatalf("dead queue: %d messages, want 2", len(dead))
		}
		dead[m.MessageId] = m
	}
	if m := dead["garbage"]; !strings.Contains(fmt.Sprint(m.Headers[rabbit.HeaderError]), "malformed message") {
		t.Errorf("garbage dead with %v", m.Headers)
	}
	if m := dead[es[0].TaskID.String()]; !strings.Contains(fmt.Sprint(m.Headers[rabbit.HeaderError]), "550") {
		t.Errorf("550 task dead with %v", m.Headers)
	}
	conn := amqptest.Conn(t, b.topo)
	for _, q := range b.topo.Queues()[:4] {
		testenv.WaitFor(t, 10*time.Second, q+" empty", func() bool {
			n, err := conn.QueueDepth(context.Background(), q)
			return err == nil && n == 0
		})
	}
}

// A worker that dies after the SMTP server accepted a message and the send
// was recorded, before the ack: the broker redelivers the task, and no
// second email goes out.
func TestCrashBeforeAckSendsOnce(t *testing.T) {
	t.Parallel()
	var once sync.Once
	b := setup(t, func(c *Config) {
		c.afterDeliver = func(conn *rabbit.Conn) {
			once.Do(func() { _ = conn.Close() }) // the process dies: its connection goes, the message unacked
		}
	})
	id, to := newID(), "ada-"+newID()[:8]+"@example.com"
	b.in.Produce(t, captured(id, to))
	es := b.emails(t, id, func(es []emailJSON) bool { return statuses(es) == "confirmation:sent" })
	msgID := "<" + es[0].TaskID.String() + "@orderflow.local>"
	testenv.WaitFor(t, 10*time.Second, "the task redelivered and acked", func() bool {
		conn := amqptest.Conn(t, b.topo)
		n, err := conn.QueueDepth(context.Background(), b.topo.Queue)
		return err == nil && n == 0 && b.smtp.Attempts(msgID) >= 1
	})
	time.Sleep(300 * time.Millisecond) // a second send would come now
	if n := b.smtp.Attempts(msgID); n != 1 {
		t.Errorf("the SMTP server saw %d sends of the task, want 1", n)
	}
}

// RabbitMQ connections closed by force while 1,000 tasks flow: every
// email is delivered, none twice.
func TestForcedCloseWhileFlowing(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.smtp.SetRule(func([]string, mail.Header, int) *smtp.SMTPError {
		time.Sleep(2 * time.Millisecond) // keep the flow going for a while (2 s or more)
		return nil
	})
	const n = 1000
	evs := make([]contract.Event, n)
	for i := range evs {
		id := newID()
		evs[i] = captured(id, "c-"+id[:8]+"@example.com")
	}
	go b.in.ProduceAll(t, evs...)
	closed := 0
	for closed < 2 && b.smtp.Count() < n {
		time.Sleep(300 * time.Millisecond)
		closed += amqptest.CloseConnections(t, b.cfg.QueuePrefix)
	}
	if closed == 0 {
		t.Error("no connection closed before the flow ended: the test proves nothing")
	}
	testenv.WaitFor(t, 60*time.Second, "every email", func() bool { return b.smtp.Count() >= n })
	time.Sleep(500 * time.Millisecond) // duplicates would arrive now
	seen := map[string]int{}
	for _, m := range b.smtp.Messages() {
		seen[m.Header.Get("Message-ID")]++
	}
	dups := 0
	for _, c := range seen {
		if c > 1 {
			dups++
		}
	}
	if len(seen) != n || dups != 0 {
		t.Errorf("%d distinct emails of %d, %d sent more than once", len(seen), n, dups)
	}
}

// Two copies of one task in hand at once (a task published twice, e.g.
// after a lost confirm): one claims it and sends, the other waits for the
// claim to end, finds the task sent and is acked without a retry.
func TestTwoCopiesSendOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.smtp.SetRule(func([]string, mail.Header, int) *smtp.SMTPError {
		time.Sleep(300 * time.Millisecond) // both copies are in hand meanwhile
		return nil
	})
	tk := task{TaskID: uuid.New(), OrderID: uuid.New(), Kind: kindConfirmation, To: "twice@example.com",
		Subject: "Your order is confirmed", Text: "Thank you!", HTML: "<p>Thank you!</p>"}
	body, err := json.Marshal(tk)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		amqptest.Publish(t, b.topo.Exchange, b.topo.RoutingKey, amqp.Publishing{MessageId: tk.TaskID.String(), Body: body})
	}
	es := b.emails(t, tk.OrderID.String(), func(es []emailJSON) bool { return statuses(es) == "confirmation:sent" })
	conn := amqptest.Conn(t, b.topo)
	testenv.WaitFor(t, 10*time.Second, "both copies acked", func() bool {
		n, err := conn.QueueDepth(context.Background(), b.topo.Queue)
		m, err2 := conn.QueueDepth(context.Background(), b.topo.RetryQueue(1))
		return err == nil && err2 == nil && n == 0 && m == 0
	})
	time.Sleep(300 * time.Millisecond)
	if n := b.smtp.Attempts("<" + es[0].TaskID.String() + "@orderflow.local>"); n != 1 {
		t.Errorf("the SMTP server saw %d sends, want 1", n)
	}
}

// A worker that died after claiming a task, before the SMTP exchange
// ended: its claim holds off the redelivered copy until it goes stale (the
// copy steps aside every claimWait meanwhile, spending no attempt: the
// window is longer than MaxAttempts of them), then the copy takes over and
// the email is sent once.
func TestStaleClaimTakenOver(t *testing.T) {
	t.Parallel()
	const stale = 5 * claimWait // MaxAttempts is 4 here
	b := setup(t, func(c *Config) { c.claimStale = stale })
	tk := task{TaskID: uuid.New(), OrderID: uuid.New(), Kind: kindConfirmation, To: "late@example.com",
		Subject: "Your order is confirmed", Text: "Thank you!", HTML: "<p>Thank you!</p>"}
	pool := servicetest.Pool(t, b.cfg.Config)
	_, err := pool.Exec(context.Background(), `INSERT INTO emails (task_id, order_id, kind, to_addr, subject, status, claimed_at)
		VALUES ($1, $2, $3, $4, $5, 'queued', now())`, tk.TaskID, tk.OrderID, tk.Kind, tk.To, tk.Subject)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(tk)
	if err != nil {
		t.Fatal(err)
	}
	amqptest.Publish(t, b.topo.Exchange, b.topo.RoutingKey, amqp.Publishing{MessageId: tk.TaskID.String(), Body: body})
	msgID := "<" + tk.TaskID.String() + "@orderflow.local>"
	time.Sleep(stale / 2)
	if n := b.smtp.Attempts(msgID); n != 0 {
		t.Fatalf("sent %d times while another worker's claim was fresh", n)
	}
	es := b.emails(t, tk.OrderID.String(), func(es []emailJSON) bool { return statuses(es) != "confirmation:queued" })
	if statuses(es) != "confirmation:sent" || es[0].Attempts != 1 {
		t.Fatalf("task %s after %d attempts (%s), want sent on attempt 1", statuses(es), es[0].Attempts, es[0].LastError)
	}
	time.Sleep(300 * time.Millisecond)
	if n := b.smtp.Attempts(msgID); n != 1 {
		t.Errorf("the SMTP server saw %d sends, want 1", n)
	}
}
