package httpserver

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/telemetry"
)

// Traced wraps h in otelhttp: each request a server span, child of the
// caller's traceparent when it sent one. /healthz, /readyz and /metrics
// are left out: probes and scrapes would drown the orders. With tp nil it
// returns h as it is.
func Traced(h http.Handler, tp trace.TracerProvider, service string) http.Handler {
	if tp == nil {
		return h
	}
	return otelhttp.NewHandler(h, service,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(telemetry.Propagator),
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch strings.TrimSuffix(r.URL.Path, "/") {
			case "/healthz", "/readyz", "/metrics":
				return false
			}
			return true
		}),
	)
}

// nameSpan names the request's span after the chi route it matched
// ("POST /orders/{id}/cancel"), known only once routing is done, and tags
// it with the correlation id. Without a recording span it costs a check.
func nameSpan(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		span := trace.SpanFromContext(r.Context())
		if !span.IsRecording() {
			return
		}
		route := UnmatchedRoute
		if rctx := chi.RouteContext(r.Context()); rctx != nil && rctx.RoutePattern() != "" {
			route = rctx.RoutePattern()
		}
		span.SetName(r.Method + " " + route)
		span.SetAttributes(attribute.String("http.route", route),
			attribute.String("orderflow.correlation_id", correlation.ID(r.Context())))
	})
}
