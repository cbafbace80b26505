package httpserver

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/pkg/events/correlation"
)

// NewRouter returns the router every service starts from: correlation ids
// (correlation.Middleware), request metrics registered with reg and span
// names (see Traced) on every route, 404 and 405 answered as problem+json, and /healthz, /readyz (the
// checks) and /metrics (everything reg gathers) mounted.
func NewRouter(reg *prometheus.Registry, checks ...Check) chi.Router {
	r := chi.NewRouter()
	r.Use(correlation.Middleware, NewMetrics(reg).Middleware, nameSpan)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, Problem{Status: http.StatusNotFound, Detail: "no such endpoint"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, Problem{Status: http.StatusMethodNotAllowed})
	})
	NewHealth(reg, checks...).Mount(r)
	return r
}
