package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeOrders is a stand-in for the orders API, for what only the
// generator's own behaviour decides (schedule, tallies); the real service
// is driven in cmd/orderflowctl's test. Each order gets id "id-<n>".
type fakeOrders struct {
	mu      sync.Mutex
	bodies  map[string][]byte // id → POST /orders body
	headers map[string]http.Header
	cancels map[string][]int // id → the answers to its cancels
	// hold, when set, is called before an order is answered.
	hold func()
	// conflicts, when set, answers every other cancel 409 instead of 202.
	conflicts bool
	nCancels  int
	n         atomic.Int64
}

func newFakeOrders(t *testing.T, f *fakeOrders) *httptest.Server {
	f.bodies, f.headers, f.cancels = map[string][]byte{}, map[string]http.Header{}, map[string][]int{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := fmt.Sprintf("id-%d", f.n.Add(1))
		f.mu.Lock()
		f.bodies[id], f.headers[id] = body, r.Header.Clone()
		f.mu.Unlock()
		if f.hold != nil {
			f.hold()
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%q,"status":"placed"}`, id)
	})
	mux.HandleFunc("POST /orders/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		f.mu.Lock()
		code := http.StatusAccepted
		if f.conflicts && f.nCancels%2 == 0 {
			code = http.StatusConflict
		}
		f.nCancels++
		f.cancels[id] = append(f.cancels[id], code)
		f.mu.Unlock()
		w.WriteHeader(code)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// outRows parses Out into id → outcome, failing on a repeated id.
func outRows(t *testing.T, out string) map[string]Outcome {
	t.Helper()
	rows := map[string]Outcome{}
	for line := range strings.Lines(out) {
		id, outcome, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
		if !ok {
			t.Fatalf("out line %q is not <id>\\t<outcome>", line)
		}
		if _, dup := rows[id]; dup {
			t.Fatalf("%s written twice", id)
		}
		rows[id] = Outcome(outcome)
	}
	return rows
}

// Open loop: a server that answers nobody until every request of the
// schedule has arrived still gets them all. A closed-loop generator (the
// next request after an answer) would stall at its first requests.
func TestScheduleIsOpenLoop(t *testing.T) {
	t.Parallel()
	const rate, want = 100, 100 // one second
	arrived := make(chan struct{})
	var count atomic.Int64
	f := &fakeOrders{hold: func() {
		if count.Add(1) == want {
			close(arrived)
		}
		select {
		case <-arrived:
		case <-time.After(30 * time.Second):
			t.Errorf("only %d of %d requests arrived while none was answered", count.Load(), want)
		}
	}}
	srv := newFakeOrders(t, f)
	var out bytes.Buffer
	sum, err := Run(context.Background(), Config{OrdersURL: srv.URL, Rate: rate, Duration: time.Second, Mix: Mix{Happy: 1}, Out: &out, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Scheduled != want || sum.Sent != want || sum.Dropped != 0 || sum.Accepted != want || sum.Errors != 0 || len(sum.Rejected) != 0 {
		t.Errorf("scheduled %d, sent %d, dropped %d, accepted %d, errors %d, rejected %v; want %d sent and accepted",
			sum.Scheduled, sum.Sent, sum.Dropped, sum.Accepted, sum.Errors, sum.Rejected, want)
	}
	rows := outRows(t, out.String())
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(rows) != want {
		t.Errorf("%d rows in out, want %d", len(rows), want)
	}
	for id, outcome := range rows {
		if f.bodies[id] == nil || outcome != Happy {
			t.Errorf("out row %s %s: not an order the server accepted as happy", id, outcome)
		}
	}
	// Measured from the scheduled time, every quantile is at least the
	// one measured from the send.
	l, s := sum.Latency, sum.ServiceTime
	if l.P50 < s.P50 || l.P99 < s.P99 || l.Max < s.Max || sum.LatencyHistogram.Count() != want {
		t.Errorf("latency %v below service time %v, or %d recorded", l, s, sum.LatencyHistogram.Count())
	}
	if err := sum.Err(); err != nil {
		t.Error(err)
	}
}

// Beyond MaxInFlight, due requests are dropped and counted, not queued:
// the schedule goes on while the server answers nobody.
func TestDropsBeyondMaxInFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := &fakeOrders{hold: func() { <-release }}
	srv := newFakeOrders(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dropping := make(chan struct{})
	var once sync.Once
	done := make(chan struct{})
	var sum Summary
	var err error
	go func() {
		defer close(done)
		sum, err = Run(ctx, Config{
			OrdersURL: srv.URL, Rate: 200, Duration: time.Hour, Mix: Mix{Happy: 1}, MaxInFlight: 5,
			Progress: func(s Snapshot) {
				if s.Dropped > 0 && s.InFlight == 5 {
					once.Do(func() { close(dropping) })
				}
			},
		})
	}()
	select {
	case <-dropping:
	case <-time.After(60 * time.Second):
		t.Fatal("no progress report with dropped requests")
	}
	cancel()
	close(release)
	<-done
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v, want context.Canceled", err)
	}
	if sum.Sent < 5 || sum.Dropped < 1 || sum.Sent+sum.Dropped != sum.Scheduled || sum.Accepted != sum.Sent || int(f.n.Load()) != sum.Sent {
		t.Errorf("scheduled %d, sent %d, dropped %d, accepted %d, server saw %d", sum.Scheduled, sum.Sent, sum.Dropped, sum.Accepted, f.n.Load())
	}
}

// Each outcome's orders are shaped for it, the out-of-stock SKU is seeded
// first, cancelled orders are cancelled, and a cancel not answered 202 is
// written as cancel-unconfirmed.
func TestOutcomes(t *testing.T) {
	t.Parallel()
	const limit = 5_000
	f := &fakeOrders{conflicts: true}
	orders := newFakeOrders(t, f)
	var mu sync.Mutex
	var seeded []string
	warehouse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		seeded = append(seeded, r.Method+" "+r.URL.Path+" "+string(body))
		fmt.Fprint(w, `{"available":0}`)
	}))
	defer warehouse.Close()
	mix := Mix{Happy: 1, Declined: 1, Flaky: 1, Fraud: 1, OutOfStock: 1, Cancelled: 1}
	var out bytes.Buffer
	sum, err := Run(context.Background(), Config{
		OrdersURL: orders.URL, WarehouseURL: warehouse.URL, Rate: 300, Duration: time.Second,
		Mix: mix, FraudLimitCents: limit, Out: &out, RunID: "t1", Idempotency: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []string{"PUT /inventory/load-t1-oos {\"available\":0}"}; !slices.Equal(seeded, want) {
		t.Errorf("warehouse got %q, want %q", seeded, want)
	}
	rows := outRows(t, out.String())
	if len(rows) != sum.Accepted || sum.Accepted != 300 {
		t.Fatalf("%d rows, %d accepted, want 300", len(rows), sum.Accepted)
	}
	seen := map[Outcome]int{}
	for id, outcome := range rows {
		seen[outcome]++
		var b orderBody
		if err := json.Unmarshal(f.bodies[id], &b); err != nil {
			t.Fatal(err)
		}
		it := b.Items[0]
		shaped := map[Outcome]bool{
			Happy:             b.PaymentToken == "tok_visa" && it.Quantity*it.UnitPriceCents <= limit,
			Declined:          b.PaymentToken == "tok_declined",
			Flaky:             b.PaymentToken == "tok_flaky",
			Fraud:             b.PaymentToken == "tok_visa" && it.Quantity*it.UnitPriceCents > limit,
			OutOfStock:        it.SKU == "load-t1-oos",
			Cancelled:         slices.Equal(f.cancels[id], []int{http.StatusAccepted}),
			CancelUnconfirmed: slices.Equal(f.cancels[id], []int{http.StatusConflict}),
		}[outcome]
		if !shaped {
			t.Errorf("%s written as %s: body %s, cancels answered %v", id, outcome, f.bodies[id], f.cancels[id])
		}
		if outcome != Cancelled && outcome != CancelUnconfirmed && f.cancels[id] != nil {
			t.Errorf("%s (%s) was cancelled", id, outcome)
		}
		h := f.headers[id]
		if key := h.Get("Idempotency-Key"); !strings.HasPrefix(key, "load-t1-") || key != h.Get("X-Correlation-ID") {
			t.Errorf("%s: Idempotency-Key %q, X-Correlation-ID %q", id, key, h.Get("X-Correlation-ID"))
		}
	}
	for _, o := range append(Outcomes, CancelUnconfirmed) {
		if seen[o] == 0 {
			t.Errorf("no %s order in %v", o, seen)
		}
	}
	c := sum.Cancels
	if c.Sent != seen[Cancelled]+seen[CancelUnconfirmed] || c.Accepted != seen[Cancelled] || c.Rejected[http.StatusConflict] != seen[CancelUnconfirmed] {
		t.Errorf("cancels %+v; out has %d cancelled, %d unconfirmed", c, seen[Cancelled], seen[CancelUnconfirmed])
	}
	if sum.Outcomes[Cancelled].Accepted != seen[Cancelled]+seen[CancelUnconfirmed] {
		t.Errorf("outcomes %v", sum.Outcomes)
	}
	if err := sum.Err(); err != nil {
		t.Errorf("a 409 to a cancel is not an error: %v", err)
	}
}

// 5xx answers and requests without an answer are counted and make Err
// say so; neither is an error of Run.
func TestErrorsCounted(t *testing.T) {
	t.Parallel()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	for name, tc := range map[string]struct {
		url  string
		want func(Summary) bool
	}{
		"503":       {failing.URL, func(s Summary) bool { return s.Rejected[503] == s.Sent && s.Errors == 0 }},
		"no answer": {closed.URL, func(s Summary) bool { return s.Errors == s.Sent && strings.Contains(s.FirstError, "refused") }},
	} {
		t.Run(name, func(t *testing.T) {
			sum, err := Run(context.Background(), Config{OrdersURL: tc.url, Rate: 20, Duration: time.Second, Mix: Mix{Happy: 1}})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Sent != 20 || sum.Accepted != 0 || !tc.want(sum) {
				t.Errorf("summary %+v", sum)
			}
			if sum.Err() == nil {
				t.Error("Err is nil")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for want, cfg := range map[string]Config{
		"must start with http://":     {OrdersURL: "localhost:8080"},
		"rate must be above 0":        {Rate: -1},
		"fraud limit must be 2 to":    {FraudLimitCents: 1},
		`run id "Run-1" must be`:      {RunID: "Run-1"},
		"mix: every weight is 0":      {Mix: Mix{Happy: 0}},
		"max in flight must be above": {MaxInFlight: -3},
	} {
		if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Run(%+v) = %v; want an error containing %q", cfg, err, want)
		}
	}
}

func TestSummaryJSON(t *testing.T) {
	s := Summary{RunID: "r", Duration: 2 * time.Second, Rejected: map[int]int{422: 2}, Latency: Latency{P50: 1500 * time.Microsecond}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"runId":"r"`, `"durationSeconds":2`, `"rejected":{"422":2}`, `"latency":{"p50Ms":1.5,"p90Ms":0,"p99Ms":0,"maxMs":0}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
}
