package httpserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/pkg/httpserver"
)

func ok(context.Context) error { return nil }

func failing(msg string) func(context.Context) error {
	return func(context.Context) error { return errors.New(msg) }
}

// blocking waits for its context, like a ping to an unreachable host.
func blocking(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func serveHealth(t *testing.T, h *httpserver.Health) *httptest.Server {
	r := chi.NewRouter()
	h.Mount(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

func TestHealthz(t *testing.T) {
	srv := serveHealth(t, httpserver.NewHealth(prometheus.NewRegistry(), httpserver.Check{Name: "db", Func: failing("down")}))
	code, ct, body := get(t, srv.URL+"/healthz")
	if code != 200 || ct != "application/json" || body != `{"status":"ok"}`+"\n" {
		t.Errorf("got %d %q %s", code, ct, body)
	}
}

func TestReadyz(t *testing.T) {
	tests := []struct {
		name       string
		checks     []httpserver.Check
		wantStatus int
		want       string
	}{
		{"no checks", nil, 200, `{"status":"ready"}`},
		{"all pass", []httpserver.Check{{"postgres", ok}, {"kafka", ok}}, 200, `{"status":"ready"}`},
		{"one fails", []httpserver.Check{{"postgres", ok}, {"kafka", failing("dial tcp 127.0.0.1:9092: connection refused")}}, 503,
			`{"status":"unavailable","reason":"kafka: dial tcp 127.0.0.1:9092: connection refused"}`},
		{"two fail, in declared order", []httpserver.Check{{"postgres", failing("a")}, {"relay", ok}, {"kafka", failing("b")}}, 503,
			`{"status":"unavailable","reason":"postgres: a; kafka: b"}`},
		{"deadline", []httpserver.Check{{"postgres", ok}, {"amqp", blocking}}, 503,
			`{"status":"unavailable","reason":"amqp: context deadline exceeded"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := httpserver.NewHealth(prometheus.NewRegistry(), tt.checks...)
			httpserver.SetReadyTimeout(h, 50*time.Millisecond)
			code, ct, body := get(t, serveHealth(t, h).URL+"/readyz")
			if code != tt.wantStatus || ct != "application/json" || body != tt.want+"\n" {
				t.Errorf("got %d %q %s\nwant %d %s", code, ct, body, tt.wantStatus, tt.want)
			}
		})
	}
}

func TestReadyzRunsChecksInParallel(t *testing.T) {
	// Each check waits until all have started: run one at a time, they
	// would all time out.
	const n = 3
	var started atomic.Int32
	all := make(chan struct{})
	check := func(ctx context.Context) error {
		if started.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h := httpserver.NewHealth(prometheus.NewRegistry(), httpserver.Check{"a", check}, httpserver.Check{"b", check}, httpserver.Check{"c", check})
	code, _, body := get(t, serveHealth(t, h).URL+"/readyz")
	if code != 200 {
		t.Errorf("got %d %s", code, body)
	}
}

func TestReadyzDoesNotWaitForStuckCheck(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	stuck := func(context.Context) error { <-release; return nil } // ignores its context
	h := httpserver.NewHealth(prometheus.NewRegistry(), httpserver.Check{"stuck", stuck})
	httpserver.SetReadyTimeout(h, 50*time.Millisecond)
	code, _, body := get(t, serveHealth(t, h).URL+"/readyz")
	var st struct{ Status, Reason string }
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if code != 503 || st.Status != "unavailable" || !strings.HasPrefix(st.Reason, "stuck: no answer within") {
		t.Errorf("got %d %s", code, body)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "orderflow_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	code, ct, body := get(t, serveHealth(t, httpserver.NewHealth(reg)).URL+"/metrics")
	if code != 200 || !strings.HasPrefix(ct, "text/plain") || !strings.Contains(body, "orderflow_test_total 3") {
		t.Errorf("got %d %q %s", code, ct, body)
	}
}
