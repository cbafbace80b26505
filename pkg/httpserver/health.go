package httpserver

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyTimeout bounds one /readyz run: checks get a context with this
// deadline, and a check still running at it counts as failed.
const ReadyTimeout = 2 * time.Second

// readyGrace is how long past the deadline /readyz still waits, so a check
// that stops at the deadline is reported with its own error rather than as
// not answering.
const readyGrace = 100 * time.Millisecond

// Check is one readiness check, such as pinging the database. Func must
// return promptly once its context is done.
type Check struct {
	Name string // e.g. "postgres", "kafka", "relay"; used in the 503 reason
	Func func(ctx context.Context) error
}

// Health serves a service's /healthz, /readyz and /metrics.
type Health struct {
	checks  []Check
	metrics http.Handler
	timeout time.Duration
}

// NewHealth returns the endpoints for a service whose metrics g gathers and
// whose readiness checks are checks.
func NewHealth(g prometheus.Gatherer, checks ...Check) *Health {
	return &Health{
		checks: append([]Check(nil), checks...),
		// ContinueOnError: a collector that cannot read (the outbox backlog
		// while the database is down) must not blank every other series.
		metrics: promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
		timeout: ReadyTimeout,
	}
}

// Mount registers GET /healthz, GET /readyz and GET /metrics on r.
func (h *Health) Mount(r chi.Router) {
	r.Get("/healthz", h.Healthz)
	r.Get("/readyz", h.Readyz)
	r.Get("/metrics", h.Metrics)
}

type healthStatus struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// Healthz answers 200 {"status":"ok"} while the process can serve HTTP at
// all; it checks nothing else.
func (h *Health) Healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusOK, healthStatus{Status: "ok"})
}

// Readyz runs every check in parallel with a ReadyTimeout deadline and
// answers 200 {"status":"ready"} when all pass, or 503
// {"status":"unavailable","reason":"<check name>: <error>"} naming each
// failed check ("; "-separated, in the order given to NewHealth).
//
// Readyz waits at most a moment (100 ms) past the deadline: a check that
// ignores its context is reported as not answering, and its goroutine ends
// when the check returns.
func (h *Health) Readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	wctx, wcancel := context.WithTimeout(r.Context(), h.timeout+readyGrace)
	defer wcancel()

	type result struct {
		i   int
		err error
	}
	// Buffered for every check, so a check finishing after Readyz returned
	// does not block its goroutine.
	results := make(chan result, len(h.checks))
	for i, c := range h.checks {
		go func() { results <- result{i, c.Func(ctx)} }()
	}
	errs := make([]error, len(h.checks))
	done := make([]bool, len(h.checks))
wait:
	for range h.checks {
		select {
		case res := <-results:
			errs[res.i], done[res.i] = res.err, true
		case <-wctx.Done():
			break wait
		}
	}

	var reasons []string
	for i, c := range h.checks {
		switch {
		case !done[i]:
			reasons = append(reasons, fmt.Sprintf("%s: no answer within %s", c.Name, h.timeout))
		case errs[i] != nil:
			reasons = append(reasons, c.Name+": "+errs[i].Error())
		}
	}
	if len(reasons) > 0 {
		WriteJSON(w, http.StatusServiceUnavailable, healthStatus{Status: "unavailable", Reason: strings.Join(reasons, "; ")})
		return
	}
	WriteJSON(w, http.StatusOK, healthStatus{Status: "ready"})
}

// Metrics serves the gathered metrics in the Prometheus text format.
func (h *Health) Metrics(w http.ResponseWriter, r *http.Request) {
	h.metrics.ServeHTTP(w, r)
}
