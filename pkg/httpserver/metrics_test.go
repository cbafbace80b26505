package httpserver_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/pkg/httpserver"
)

// observations returns the sample count per "route code" label pair.
func observations(t *testing.T, g prometheus.Gatherer) map[string]uint64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "orderflow_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			got[labels["route"]+" "+labels["code"]] += m.GetHistogram().GetSampleCount()
		}
	}
	return got
}

func testRoutes(mw func(http.Handler) http.Handler) chi.Router {
	r := chi.NewRouter()
	if mw != nil {
		r.Use(mw)
	}
	r.Get("/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		if chi.URLParam(r, "id") == "missing" {
			httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusNotFound})
			return
		}
		httpserver.WriteJSON(w, http.StatusOK, map[string]string{"id": chi.URLParam(r, "id")})
	})
	r.Post("/orders", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	r.Get("/silent", func(w http.ResponseWriter, r *http.Request) {})
	r.Get("/early-hints", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusAccepted)
	})
	r.Route("/customers", func(r chi.Router) {
		r.Get("/{customerId}/points", func(w http.ResponseWriter, r *http.Request) {})
	})
	return r
}

func TestMetricsMiddleware(t *testing.T) {
	requests := []struct{ method, path string }{
		{"GET", "/orders/1"},
		{"GET", "/orders/2"},
		{"GET", "/orders/missing"},
		{"POST", "/orders"},
		{"GET", "/silent"},
		{"GET", "/early-hints"},
		{"GET", "/customers/c1/points"},
		{"GET", "/nowhere/a"},
		{"GET", "/nowhere/b"},
	}
	want := map[string]uint64{
		"/orders/{id} 200":                   2,
		"/orders/{id} 404":                   1,
		"/orders 201":                        1,
		"/silent 200":                        1,
		"/early-hints 202":                   1,
		"/customers/{customerId}/points 200": 1,
		"unmatched 404":                      2,
	}
	tests := []struct {
		name    string
		handler func(m *httpserver.Metrics) http.Handler
	}{
		{"inside router", func(m *httpserver.Metrics) http.Handler { return testRoutes(m.Middleware) }},
		{"around router", func(m *httpserver.Metrics) http.Handler { return m.Middleware(testRoutes(nil)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			srv := httptest.NewServer(tt.handler(httpserver.NewMetrics(reg)))
			defer srv.Close()
			for _, rq := range requests {
				req, _ := http.NewRequest(rq.method, srv.URL+rq.path, nil)
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			got := observations(t, reg)
			if len(got) != len(want) {
				t.Errorf("got %v\nwant %v", got, want)
			}
			for k, n := range want {
				if got[k] != n {
					t.Errorf("%s: %d observations, want %d (all: %v)", k, got[k], n, got)
				}
			}
		})
	}
}

func TestMetricsPanicCountsAs500(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := chi.NewRouter()
	r.Use(httpserver.NewMetrics(reg).Middleware)
	r.Get("/boom", func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
	func() {
		defer func() { _ = recover() }()
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/boom", nil))
	}()
	if got := observations(t, reg); got["/boom 500"] != 1 {
		t.Errorf("got %v", got)
	}
}

func TestNewMetricsTwiceSharesHistogram(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := httpserver.NewMetrics(reg), httpserver.NewMetrics(reg)
	for _, m := range []*httpserver.Metrics{a, b} {
		testRoutes(m.Middleware).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/orders", nil))
	}
	if got := observations(t, reg); got["/orders 201"] != 2 {
		t.Errorf("got %v", got)
	}
}

func TestMetricsFlushReachesWriter(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := httpserver.NewMetrics(reg).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if !rec.Flushed {
		t.Error("not flushed")
	}
}

// TestMetricsAllocs checks that timing a request inside a chi router adds no
// allocation once its label pair exists.
func TestMetricsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	r := chi.NewRouter()
	r.Use(httpserver.NewMetrics(prometheus.NewRegistry()).Middleware)
	r.Get("/orders/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	bare := chi.NewRouter()
	bare.Get("/orders/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })

	req := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
	w := discardWriter{h: http.Header{}}
	base := testing.AllocsPerRun(100, func() { bare.ServeHTTP(w, req) })
	got := testing.AllocsPerRun(100, func() { r.ServeHTTP(w, req) })
	if got > base {
		t.Errorf("with metrics: %v allocs per request, without: %v", got, base)
	}
}

type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}

func BenchmarkMetricsMiddleware(b *testing.B) {
	r := chi.NewRouter()
	r.Use(httpserver.NewMetrics(prometheus.NewRegistry()).Middleware)
	r.Get("/orders/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	req := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
	w := discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		r.ServeHTTP(w, req)
	}
}
