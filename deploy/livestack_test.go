package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/devstack"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	svc "github.com/orderflow/orderflow/pkg/service"
)

// liveStack is the stack `make run` runs, started by startLiveStack: each
// service's base URL, and the embedded broker's address.
type liveStack struct {
	urls   map[string]string
	broker string
}

var bannerKafka = regexp.MustCompile(`kafka +\[([0-9.:]+)`)

// startLiveStack runs devstack.Run with every service on a fresh database
// (pgtest) and a free port, pools of 2 (the PostgreSQL server is shared),
// the embedded broker on a free port, the email queues under a prefix of
// this test's, emails to an mbox in a temporary directory, tracing off,
// and the timers short so that they fire within the test. It stops when t
// ends.
func startLiveStack(t *testing.T) *liveStack {
	t.Helper()
	for k, v := range map[string]string{
		"KAFKA_BROKERS":                      "", // the stack's own embedded broker
		"SMTP_ADDR":                          "",
		"WAREHOUSE_SHIP_DELAY":               "100ms",
		"LOYALTY_AWARD_DELAY":                "1s",
		"EMAIL_RETRY_DELAYS":                 "",
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
		"LOG_LEVEL":                          "warn",
	} {
		t.Setenv(k, v)
	}
	databases, addrs := map[string]string{}, map[string]string{}
	for _, name := range devstack.Services() {
		databases[name] = pgtest.DatabaseName(t, pgtest.NewDatabase(t))
		addrs[name] = testenv.FreeAddr(t)
	}
	banner := &testenv.SyncBuffer{}
	running := testenv.Start(t, func(ctx context.Context) error {
		return devstack.Run(ctx, banner, devstack.Options{
			KafkaAddr:   "127.0.0.1:0",
			QueuePrefix: amqptest.Prefix(t),
			DataDir:     t.TempDir(),
			Logs:        t.Output(),
			Configure: func(name string, c *svc.Config) {
				c.HTTPAddr, c.Database, c.MaxConns = addrs[name], databases[name], 2
				c.RetryBackoff = 5 * time.Millisecond
			},
		})
	})
	t.Cleanup(running.Stop)
	s := &liveStack{urls: map[string]string{}}
	for name, addr := range addrs {
		s.urls[name] = "http://" + addr
		servicetest.WaitReady(t, s.urls[name])
	}
	m := bannerKafka.FindStringSubmatch(banner.String())
	if m == nil {
		t.Fatalf("devstack's banner names no kafka address:\n%s", banner)
	}
	s.broker = m[1]
	return s
}

// post sends body as JSON and returns the status and the response body; a
// transport error fails the test.
func post(t *testing.T, url string, body any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ = io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// drive makes the series that appear only on their first observation:
// orders with each kind of outcome (paid and shipped with points, declined,
// cancelled, rejected), a GET on every service's API, and a record that is
// not JSON on the orders topic, which every consumer of it dead-letters.
func (s *liveStack) drive(t *testing.T) {
	t.Helper()
	place := func(token string, quantity int) (id, sku, customer string) {
		tag := uuid.NewString()[:8]
		sku, customer = "sku-"+tag, "c-"+tag
		code, body := post(t, s.urls["orders"]+"/orders", map[string]any{
			"customerId": customer, "email": "ada@example.com", "currency": "EUR", "paymentToken": token,
			"items": []map[string]any{{"sku": sku, "quantity": quantity, "unitPriceCents": 1250}},
		})
		if code != http.StatusCreated {
			t.Fatalf("POST /orders (%s): %d %s", token, code, body)
		}
		var v struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &v); err != nil || v.ID == "" {
			t.Fatalf("POST /orders: %s: %v", body, err)
		}
		return v.ID, sku, customer
	}
	happy, sku, customer := place("tok_visa", 1)
	place("tok_visa", 2)
	place("tok_declined", 1)
	cancelled, _, _ := place("tok_visa", 1)
	post(t, s.urls["orders"]+"/orders/"+cancelled+"/cancel", struct{}{})
	if code, body := post(t, s.urls["orders"]+"/orders", map[string]any{"customerId": ""}); code < 400 || code >= 500 {
		t.Errorf("POST /orders with an invalid body: %d %s; want a 4xx", code, body)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(s.broker))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	poison := &kgo.Record{Topic: contract.TopicOrders, Key: []byte("poison-" + uuid.NewString()), Value: []byte("not json")}
	if err := cl.ProduceSync(ctx, poison).FirstErr(); err != nil {
		t.Fatalf("produce a poison record to %s: %v", contract.TopicOrders, err)
	}

	// The happy order to the end, so that the payments, the warehouse's
	// shipping timer, the loyalty award timer and the emails have run.
	servicetest.WaitJSON(t, s.urls["orders"]+"/orders/"+happy, func(v struct{ Status string }) bool { return v.Status == "shipped" })
	for _, u := range []string{
		s.urls["payments"] + "/payments/" + happy,
		s.urls["warehouse"] + "/shipments/" + happy,
		s.urls["warehouse"] + "/inventory/" + sku,
		s.urls["loyalty"] + "/customers/" + customer + "/points",
		s.urls["email"] + "/emails?orderId=" + happy,
		s.urls["orders"] + "/no-such-route",
	} {
		servicetest.GetJSON(t, u, nil)
	}
}

// scrapeAll reads every service's /metrics.
func (s *liveStack) scrapeAll(t *testing.T) scrape {
	t.Helper()
	got := scrape{}
	for _, name := range sortedKeys(s.urls) {
		resp, err := http.Get(s.urls[name] + "/metrics")
		if err != nil {
			t.Fatalf("%s: GET /metrics: %v", name, err)
		}
		err = parseExposition(got, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
		if err != nil {
			t.Fatalf("%s: GET /metrics: %v", name, err)
		}
	}
	return got
}
