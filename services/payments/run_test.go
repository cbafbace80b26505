package payments

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
)

// bundle is a running payments service with a producer for its input
// topics and a collector of what it emits.
type bundle struct {
	base     string
	producer *kgo.Client
	pool     *pgxpool.Pool

	mu      sync.Mutex
	emitted map[string][]string // orderId → event names on "payments", in order
}

// setup runs the whole service (Run) against a fresh database and an
// embedded broker, and collects the "payments" topic.
func setup(t *testing.T) *bundle {
	t.Helper()
	broker := kafkatest.Start(t)
	owner := pgtest.NewOwner(t)
	cfg := Config{
		Config: service.Config{
			HTTPAddr:     testenv.FreeAddr(t),
			PostgresURL:  pgtest.ServerURL(),
			Database:     owner.Database,
			Role:         owner.Role,
			MaxConns:     4,
			Brokers:      broker.Addrs,
			Kafka:        broker.Service,
			RetryBackoff: time.Millisecond,
		},
		FraudLimitCents: 100_000,
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	testenv.Start(t, func(ctx context.Context) error { return Run(ctx, cfg, log) })
	b := &bundle{base: "http://" + cfg.HTTPAddr, emitted: map[string][]string{}}
	testenv.WaitFor(t, 30*time.Second, "readyz 200", func() bool {
		resp, err := http.Get(b.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	var err error
	b.producer, err = kgo.NewClient(broker.Opts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.producer.Close)

	dbURL, err := postgres.EnsureDatabase(context.Background(), pgtest.ServerURL(), cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	b.pool, err = pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.pool.Close)

	cl, err := kgo.NewClient(broker.Opts(kgo.ConsumeTopics(contract.TopicPayments),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			fetches.EachRecord(func(r *kgo.Record) {
				var env contract.Envelope
				if err := json.Unmarshal(r.Value, &env); err != nil {
					return
				}
				b.mu.Lock()
				b.emitted[string(r.Key)] = append(b.emitted[string(r.Key)], env.Event)
				b.mu.Unlock()
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return b
}

// produce writes ev to its topic as its producer would: key = orderId,
// CloudEvents headers. The envelope's event id and time are filled in.
func (b *bundle) produce(t *testing.T, ev contract.Event) {
	t.Helper()
	b.produceRaw(t, ev, complete(t, ev))
}

// complete fills in ev's event name, version, event id and time where
// empty, and returns its JSON.
func complete(t *testing.T, ev contract.Event) []byte {
	t.Helper()
	m := ev.Meta()
	m.Event, m.Version = ev.Name(), 1
	if m.EventID == "" {
		m.EventID = uuid.Must(uuid.NewV7()).String()
	}
	if m.OccurredAt.IsZero() {
		m.OccurredAt = time.Now().UTC()
	}
	value, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return value
}

func (b *bundle) produceRaw(t *testing.T, ev contract.Event, value []byte) {
	t.Helper()
	m := ev.Meta()
	topic, _ := contract.TopicOf(ev.Name())
	source := "orderflow/orders"
	if topic == contract.TopicWarehouse {
		source = "orderflow/warehouse"
	}
	rec := &kgo.Record{Topic: topic, Key: []byte(m.OrderID), Value: value, Headers: []kgo.RecordHeader{
		{Key: "ce_specversion", Value: []byte("1.0")},
		{Key: "ce_id", Value: []byte(m.EventID)},
		{Key: "ce_type", Value: []byte(ev.Name())},
		{Key: "ce_source", Value: []byte(source)},
		{Key: "ce_time", Value: []byte(m.OccurredAt.Format(time.RFC3339Nano))},
		{Key: "content-type", Value: []byte("application/json")},
		{Key: "x-correlation-id", Value: []byte("payments-test")},
	}}
	if err := b.producer.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func placed(orderID, token string, totalCents int64) *contract.OrderPlaced {
	return &contract.OrderPlaced{
		Envelope:     contract.Envelope{OrderID: orderID},
		CustomerID:   "cust-1",
		Email:        "ada@example.com",
		Items:        []contract.Item{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: totalCents}},
		TotalCents:   totalCents,
		Currency:     "EUR",
		PaymentToken: token,
	}
}

func cancelled(orderID, reason string) *contract.OrderCancelled {
	return &contract.OrderCancelled{Envelope: contract.Envelope{OrderID: orderID}, Reason: reason}
}

// payment polls GET /payments/{orderId} until cond holds.
func (b *bundle) waitPayment(t *testing.T, orderID string, cond func(paymentJSON) bool) paymentJSON {
	t.Helper()
	var p paymentJSON
	testenv.WaitFor(t, 30*time.Second, "payment of "+orderID, func() bool {
		resp, err := http.Get(b.base + "/payments/" + orderID)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
		p = paymentJSON{}
		return json.NewDecoder(resp.Body).Decode(&p) == nil && cond(p)
	})
	return p
}

// waitEmitted waits until the events emitted for orderID end with last,
// and returns them all.
func (b *bundle) waitEmitted(t *testing.T, orderID, last string) []string {
	t.Helper()
	var got []string
	testenv.WaitFor(t, 30*time.Second, last+" for "+orderID, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		got = append([]string(nil), b.emitted[orderID]...)
		return len(got) > 0 && got[len(got)-1] == last
	})
	return got
}

// outboxEvents lists the events payments wrote for orderID, in order.
func (b *bundle) outboxEvents(t *testing.T, orderID string) []string {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), "SELECT event_type FROM outbox WHERE key = $1 ORDER BY txid, id", orderID)
	if err != nil {
		t.Fatal(err)
	}
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

func status(s, reason string) func(paymentJSON) bool {
	return func(p paymentJSON) bool { return p.Status == s && p.Reason == reason }
}

// TestFlows drives each flow of docs/design.md through Kafka and checks the payment
// GET /payments shows and the events payments emits. Where a test must
// show that something happened only once, it ends the order with a refund:
// the order's events share one partition in commit order, so once the
// refund is seen, every earlier event is too.
func TestFlows(t *testing.T) {
	t.Parallel()
	b := setup(t)

	tests := []struct {
		name string
		run  func(t *testing.T, id string)
	}{
		{"visa captures once, refunded on cancel", func(t *testing.T, id string) {
			b.produce(t, placed(id, "tok_visa", 2500))
			p := b.waitPayment(t, id, status("captured", ""))
			if p.AmountCents != 2500 || p.Currency != "EUR" || p.PaymentID == uuid.Nil {
				t.Errorf("payment %+v", p)
			}
			b.waitEmitted(t, id, "PaymentCaptured")
			b.produce(t, cancelled(id, "customer_request"))
			b.waitPayment(t, id, status("refunded", "customer_request"))
			got := b.waitEmitted(t, id, "PaymentRefunded")
			if fmt.Sprint(got) != "[PaymentCaptured PaymentRefunded]" {
				t.Errorf("emitted %v", got)
			}
		}},
		{"declined", func(t *testing.T, id string) {
			b.produce(t, placed(id, "tok_declined", 2500))
			b.waitPayment(t, id, status("failed", "declined"))
			if got := b.waitEmitted(t, id, "PaymentFailed"); len(got) != 1 {
				t.Errorf("emitted %v", got)
			}
		}},
		{"fraud", func(t *testing.T, id string) {
			b.produce(t, placed(id, "tok_visa", 100_001))
			b.waitPayment(t, id, status("failed", "fraud_suspected"))
			if got := b.waitEmitted(t, id, "PaymentFailed"); len(got) != 1 {
				t.Errorf("emitted %v", got)
			}
		}},
		{"flaky captures once after retries", func(t *testing.T, id string) {
			b.produce(t, placed(id, "tok_flaky", 2500))
			p := b.waitPayment(t, id, status("captured", ""))
			if p.Attempts != 3 {
				t.Errorf("captured at attempt %d, want 3", p.Attempts)
			}
			b.produce(t, cancelled(id, "customer_request"))
			got := b.waitEmitted(t, id, "PaymentRefunded")
			if fmt.Sprint(got) != "[PaymentCaptured PaymentRefunded]" {
				t.Errorf("emitted %v", got)
			}
		}},
		{"duplicate record captures once", func(t *testing.T, id string) {
			ev := placed(id, "tok_visa", 2500)
			b.produce(t, ev) // fills in eventId and occurredAt
			value, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			b.produceRaw(t, ev, value)
			// The same order under a new eventId: still one capture.
			again := placed(id, "tok_visa", 2500)
			b.produce(t, again)
			b.produce(t, cancelled(id, "customer_request"))
			got := b.waitEmitted(t, id, "PaymentRefunded")
			if fmt.Sprint(got) != "[PaymentCaptured PaymentRefunded]" {
				t.Errorf("emitted %v", got)
			}
		}},
		{"stock unavailable refunds out_of_stock", func(t *testing.T, id string) {
			b.produce(t, placed(id, "tok_visa", 2500))
			b.waitPayment(t, id, status("captured", ""))
			b.produce(t, &contract.StockUnavailable{Envelope: contract.Envelope{OrderID: id}, SKUs: []string{"SKU-1"}})
			b.waitPayment(t, id, status("refunded", "out_of_stock"))
			got := b.waitEmitted(t, id, "PaymentRefunded")
			if fmt.Sprint(got) != "[PaymentCaptured PaymentRefunded]" {
				t.Errorf("emitted %v", got)
			}
		}},
		{"cancelled before placed captures nothing", func(t *testing.T, id string) {
			b.produce(t, &contract.StockUnavailable{Envelope: contract.Envelope{OrderID: id}, SKUs: []string{"SKU-1"}})
			b.produce(t, cancelled(id, "out_of_stock"))
			b.produce(t, placed(id, "tok_visa", 2500))
			b.waitPayment(t, id, status("failed", "cancelled_before_payment"))
			// The outbox row would be in the transaction that wrote the payment.
			if got := b.outboxEvents(t, id); len(got) != 0 {
				t.Errorf("outbox holds %v, want nothing", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, uuid.Must(uuid.NewV7()).String())
		})
	}
}

func TestPaymentGetNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, id := range []string{uuid.NewString(), "not-a-uuid"} {
		resp, err := http.Get(b.base + "/payments/" + id)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET /payments/%s = %d %s", id, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}
