// Package telemetry sets up a service's OpenTelemetry tracing from the
// standard OTEL_* variables. Tracing is off unless an OTLP endpoint is
// configured, and off costs nothing but a nil check: the parts that trace
// (HTTP, Kafka, pgx, AMQP, timers, SMTP) take no hook at all without a
// provider.
//
// Spans leave as OTLP over HTTP/protobuf (port 4318 of Jaeger, Tempo or an
// OpenTelemetry Collector). The SDK itself reads OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG (default parentbased_always_on), the
// OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout) and
// OTEL_RESOURCE_ATTRIBUTES.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Propagator carries trace context in W3C traceparent and tracestate
// headers: HTTP, Kafka record headers, AMQP headers, outbox rows, timers.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Settings are the OTEL_* variables that decide whether tracing is on.
type Settings struct {
	Exporter    string // OTEL_TRACES_EXPORTER: "otlp", "none" or empty
	Endpoint    string // OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT
	Protocol    string // OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL
	Disabled    bool   // OTEL_SDK_DISABLED=true
	ServiceName string // OTEL_SERVICE_NAME; empty: the service's own name
}

// SettingsFromEnv reads Settings from the environment.
func SettingsFromEnv() Settings {
	return Settings{
		Exporter:    os.Getenv("OTEL_TRACES_EXPORTER"),
		Endpoint:    firstEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
		Protocol:    firstEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
		Disabled:    strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true"),
		ServiceName: os.Getenv("OTEL_SERVICE_NAME"),
	}
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// Enabled reports whether the settings turn tracing on, and an error
// naming the variable when they ask for what this build cannot do.
func (s Settings) Enabled() (bool, error) {
	if s.Disabled {
		return false, nil
	}
	switch s.Exporter {
	case "none":
		return false, nil
	case "":
		// No exporter named: on when an endpoint is, so that setting
		// OTEL_EXPORTER_OTLP_ENDPOINT alone is enough.
		if s.Endpoint == "" {
			return false, nil
		}
	case "otlp":
	default:
		return false, &SettingError{Var: "OTEL_TRACES_EXPORTER", Value: s.Exporter, Reason: "want otlp or none"}
	}
	switch s.Protocol {
	case "", "http/protobuf":
	default:
		return false, &SettingError{Var: "OTEL_EXPORTER_OTLP_PROTOCOL", Value: s.Protocol,
			Reason: "this build sends http/protobuf only (OTLP's port 4318)"}
	}
	return true, nil
}

// SettingError names an OTEL_* variable whose value this build cannot use.
type SettingError struct{ Var, Value, Reason string }

func (e *SettingError) Error() string { return fmt.Sprintf("%s=%q: %s", e.Var, e.Value, e.Reason) }

// Tracing is a service's tracer provider; a nil *Tracing or nil Provider
// means tracing is off.
type Tracing struct {
	Provider trace.TracerProvider
	shutdown func(context.Context) error
}

// Start returns the service's tracing: nil when the settings leave it off,
// else a provider exporting over OTLP with service.name set to
// s.ServiceName, or to service when that is empty.
func Start(ctx context.Context, service string, s Settings) (*Tracing, error) {
	on, err := s.Enabled()
	if err != nil || !on {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	name := s.ServiceName
	if name == "" {
		name = service
	}
	res, err := resource.New(ctx,
		resource.WithFromEnv(), // OTEL_RESOURCE_ATTRIBUTES
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(semconv.ServiceName(name)),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("otel resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{Provider: tp, shutdown: tp.Shutdown}, nil
}

// WithProvider wraps a provider the caller owns (tests' in-memory
// recorders): Shutdown leaves it alone.
func WithProvider(tp trace.TracerProvider) *Tracing {
	if tp == nil {
		return nil
	}
	return &Tracing{Provider: tp}
}

// On reports whether t traces.
func (t *Tracing) On() bool { return t != nil && t.Provider != nil }

// TracerProvider is t's provider, or nil when tracing is off.
func (t *Tracing) TracerProvider() trace.TracerProvider {
	if !t.On() {
		return nil
	}
	return t.Provider
}

// Shutdown exports the spans still buffered; ctx bounds the wait.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}
