package devstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/service"
)

// The five services at their default pool sizes hold at most
// service.ConnectionBudget PostgreSQL connections, from start through a
// burst of orders far beyond what the pools can run at once: the requests
// beyond them wait for a connection and none fails. Connections are told
// apart by an application_name of this test's own, which every pool, relay
// and setup connection carries (with its suffix).
func TestConnectionBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole stack")
	}
	databases := stackDatabases(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "ofbudget" + hex.EncodeToString(b)
	server, err := url.Parse(pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	q := server.Query()
	q.Set("application_name", name)
	server.RawQuery = q.Encode()

	counter, err := pgx.Connect(context.Background(), pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { counter.Close(context.Background()) })
	var peak atomic.Int64
	sampling, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampling.Err() == nil {
			var n int64
			err := counter.QueryRow(sampling,
				"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1", name+"%").Scan(&n)
			if err == nil && n > peak.Load() {
				peak.Store(n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	s := startStackOn(t, map[string]string{
		"POSTGRES_URL":         server.String(),
		"WAREHOUSE_SHIP_DELAY": "100ms",
		"LOYALTY_AWARD_DELAY":  "100ms",
	}, databases, 0)

	const clients, perClient = 48, 20
	var wg sync.WaitGroup
	ids := make(chan string, clients*perClient)
	for range clients {
		wg.Go(func() {
			for range perClient {
				body, err := json.Marshal(newOrder("tok_visa", 1, 1000))
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := http.Post(s["orders"]+"/orders", "application/json", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("POST /orders beyond the pool: %s %s", resp.Status, got)
					return
				}
				ids <- string(got)
			}
		})
	}
	wg.Wait()
	close(ids)
	var last string
	for body := range ids {
		last = body
	}
	if last == "" {
		t.Fatal("no order placed")
	}
	// The last order through to shipped: every service has worked the
	// burst's backlog by then.
	var v orderView
	if err := json.Unmarshal([]byte(last), &v); err != nil {
		t.Fatal(err)
	}
	s.waitOrder(t, v.ID, status("shipped"))
	stopSampling()
	<-sampled

	t.Logf("peak %d PostgreSQL connections (budget %d, default pool %d)", peak.Load(), service.ConnectionBudget, service.DefaultMaxConns)
	if peak.Load() > service.ConnectionBudget {
		t.Errorf("the stack held %d PostgreSQL connections at peak, over its budget of %d", peak.Load(), service.ConnectionBudget)
	}
	if peak.Load() < int64(len(units)) {
		t.Errorf("peak %d connections: fewer than one per service, so the count missed them (application_name %s)", peak.Load(), name)
	}
}
