package timer

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/telemetry"
)

// Context is ctx carrying what the transaction that scheduled t carried:
// its correlation id and its trace context, which a service keeps in the
// timer's payload (correlation.Traceparent at scheduling time). With
// tracer set, the firing gets a "timer <kind> fire" span, child of the
// scheduling span, and what the FireFunc writes becomes its child; call
// end when the firing is done. With tracer nil the traceparent is passed
// on as it was.
func Context(ctx context.Context, tracer trace.Tracer, t Timer, correlationID, traceparent string) (_ context.Context, end func()) {
	if correlationID != "" {
		ctx = correlation.WithID(ctx, correlationID)
	}
	if !correlation.ValidTraceparent(traceparent) {
		return ctx, func() {}
	}
	if tracer == nil {
		return correlation.WithTraceparent(ctx, traceparent), func() {}
	}
	parent := telemetry.Propagator.Extract(ctx, carrier(traceparent))
	ctx, span := tracer.Start(parent, "timer "+t.Kind+" fire",
		trace.WithAttributes(
			attribute.String("orderflow.timer.kind", t.Kind),
			attribute.String("orderflow.order_id", t.Key),
			attribute.Int("orderflow.timer.attempts", int(t.Attempts)),
		))
	return ctx, func() { span.End() }
}

// Tracer is the tracer services fire timers under (Context); nil when tp
// is.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer("github.com/orderflow/orderflow/pkg/events/timer")
}

// carrier holds one traceparent for the propagator to read.
type carrier string

func (c carrier) Get(key string) string {
	if key == correlation.TraceparentHeader {
		return string(c)
	}
	return ""
}
func (carrier) Set(string, string) {}
func (carrier) Keys() []string     { return []string{correlation.TraceparentHeader} }
