package devstack

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
)

var kafkaLine = regexp.MustCompile(`kafka +\[([0-9.:]+)\]`)

// What `make run` does, twice over one data directory: it prints where it
// listens and a curl example, takes an order, stops within 10 s when asked,
// and the broker keeps the published event across the restart.
func TestRunStopsPromptlyAndKeepsEvents(t *testing.T) {
	if os.Getenv("KAFKA_BROKERS") != "" {
		t.Skip("runs the embedded broker")
	}
	databases, addrs := map[string]string{}, map[string]string{}
	var ordersURL string
	for _, u := range units {
		dbURL := pgtest.NewDatabase(t)
		parsed, err := url.Parse(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		databases[u.name], addrs[u.name] = strings.TrimPrefix(parsed.Path, "/"), testenv.FreeAddr(t)
		if u.name == "orders" {
			ordersURL = dbURL
		}
	}
	dataDir, prefix := t.TempDir(), amqptest.Prefix(t)
	httpAddr := addrs["orders"]

	start := func() (banner *testenv.SyncBuffer, stop func()) {
		banner = &testenv.SyncBuffer{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, banner, Options{
				KafkaAddr:   "127.0.0.1:0",
				QueuePrefix: prefix,
				DataDir:     dataDir,
				Logs:        io.Discard,
				Configure: func(name string, c *service.Config) {
					c.HTTPAddr, c.Database, c.MaxConns = addrs[name], databases[name], 4
				},
			})
		}()
		testenv.WaitFor(t, 30*time.Second, "readyz 200", func() bool {
			resp, err := http.Get("http://" + httpAddr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		return banner, func() {
			cancel()
			testenv.Stopped(t, done, 10*time.Second)
		}
	}

	banner, stop := start()
	for _, want := range []string{"Orderflow is running", "http://" + httpAddr, "curl -si " + httpAddr + "/orders"} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	body := `{"customerId":"c-42","email":"ada@example.com","items":[{"sku":"book-1","quantity":2,"unitPriceCents":1250}],"currency":"EUR","paymentToken":"tok_visa"}`
	resp, err := http.Post("http://"+httpAddr+"/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /orders: %s", resp.Status)
	}
	orderID := strings.TrimPrefix(resp.Header.Get("Location"), "/orders/")
	pool, err := postgres.Connect(context.Background(), ordersURL, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	testenv.WaitFor(t, 30*time.Second, "the event published", func() bool {
		var pending int
		err := pool.QueryRow(context.Background(),
			"SELECT count(*) FROM outbox o, outbox_cursor c WHERE (o.txid, o.id) > (c.txid, c.id)").Scan(&pending)
		return err == nil && pending == 0
	})
	stop()

	banner, stop = start()
	defer stop()
	m := kafkaLine.FindStringSubmatch(banner.String())
	if m == nil {
		t.Fatalf("banner names no kafka address:\n%s", banner)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(m[1]), kgo.ConsumeTopics(contract.TopicOrders),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("the event published before the restart is not on the broker after it")
		}
		found := false
		fs.EachRecord(func(r *kgo.Record) { found = found || string(r.Key) == orderID })
		if found {
			return
		}
	}
}
