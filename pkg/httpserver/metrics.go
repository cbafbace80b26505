package httpserver

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// UnmatchedRoute is the route label of requests no route matched (404s from
// the router), so unknown paths cannot grow the label set.
const UnmatchedRoute = "unmatched"

// Metrics records orderflow_http_request_duration_seconds{route,code}.
type Metrics struct {
	duration *prometheus.HistogramVec
}

// NewMetrics registers the request duration histogram on reg and returns
// its middleware. Give each service its own registry: the metric has no
// service label. If reg already has the histogram (a second NewMetrics on
// the same registry), that one is shared. It panics on any other
// registration error, as prometheus.MustRegister does.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "orderflow_http_request_duration_seconds",
		Help: "Time to serve an HTTP request, by chi route pattern and status code.",
		// Finer than prometheus.DefBuckets at the low end: most requests
		// here take well under 5 ms.
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "code"})
	if err := reg.Register(h); err != nil {
		are, ok := err.(prometheus.AlreadyRegisteredError)
		if !ok {
			panic(err)
		}
		h = are.ExistingCollector.(*prometheus.HistogramVec)
	}
	return &Metrics{duration: h}
}

// Middleware times each request and records it under the chi route pattern
// it matched (e.g. "/orders/{id}", read after the handler ran) and its
// status code. Use it inside the router (r.Use(m.Middleware)); wrapped
// around a chi router it works too but costs a route context per request.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rctx := chi.RouteContext(r.Context())
		if rctx == nil {
			// Outside a router: give the router a context to fill in.
			rctx = chi.NewRouteContext()
			r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, rctx))
		}
		rec := recorders.Get().(*statusRecorder)
		rec.ResponseWriter = w
		returned := false
		defer func() {
			route := rctx.RoutePattern()
			if route == "" {
				route = UnmatchedRoute
			}
			status := rec.status
			switch {
			case status != 0:
			case returned:
				status = http.StatusOK // what net/http sends when nothing was written
			default:
				status = http.StatusInternalServerError // the handler panicked
			}
			*rec = statusRecorder{}
			recorders.Put(rec)
			m.duration.WithLabelValues(route, codeLabel(status)).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(rec, r)
		returned = true
	})
}

// recorders pools status recorders so timing a request allocates nothing.
var recorders = sync.Pool{New: func() any { return new(statusRecorder) }}

// codeLabels holds the label of every standard status code, so observing
// does not format one per request.
var codeLabels = func() (l [600]string) {
	for c := 100; c < len(l); c++ {
		l[c] = strconv.Itoa(c)
	}
	return l
}()

func codeLabel(code int) string {
	if code >= 100 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return strconv.Itoa(code)
}

// statusRecorder remembers the final status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	// 1xx responses (e.g. 103 Early Hints) precede the final status.
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush keeps streaming handlers working through the recorder.
func (s *statusRecorder) Flush() {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
