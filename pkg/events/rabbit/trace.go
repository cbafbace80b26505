package rabbit

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/telemetry"
)

// Tracing follows the messaging conventions as kotel does for Kafka: a
// "<exchange> publish" producer span per message, child of the span that
// wrote its outbox row, its context in the message's traceparent header;
// and a "<queue> process" consumer span per delivery, child of that.

const tracerName = "github.com/orderflow/orderflow/pkg/events/rabbit"

// headerCarrier reads and writes an AMQP header table for the propagator.
type headerCarrier amqp.Table

func (c headerCarrier) Get(key string) string {
	s, _ := c[key].(string)
	return s
}
func (c headerCarrier) Set(key, value string) { c[key] = value }
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// SetTracing makes Publish trace with tp (nil: off). Call it before the
// first Publish.
func (p *Publisher) SetTracing(tp trace.TracerProvider) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tracer = nil
	if tp != nil {
		p.tracer = tp.Tracer(tracerName)
	}
}

// publishSpan starts m's publish span and writes its context into pub's
// headers; nil when tracing is off.
func (p *Publisher) publishSpan(m outbox.Message, exchange string, pub *amqp.Publishing) trace.Span {
	if p.tracer == nil {
		return nil
	}
	parent := context.Background()
	if correlation.ValidTraceparent(m.Traceparent) {
		parent = telemetry.Propagator.Extract(parent, headerCarrier{correlation.TraceparentHeader: m.Traceparent})
	}
	ctx, span := p.tracer.Start(parent, exchange+" publish", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "rabbitmq"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", exchange),
			attribute.String("messaging.message.id", m.EventID.String()),
			attribute.String("orderflow.order_id", m.Key),
		))
	telemetry.Propagator.Inject(ctx, headerCarrier(pub.Headers))
	return span
}

// endSpans ends the publish spans of a batch; those from failed on did
// not reach the broker.
func endSpans(spans []trace.Span, failed int, err error) {
	for i, s := range spans {
		if s == nil {
			continue
		}
		if i >= failed && err != nil {
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
}

// processSpan starts d's process span, child of its publish span, and
// returns ctx carrying it; with tracing off, ctx carries d's traceparent
// as it came.
func (w *Worker) processSpan(ctx context.Context, d *Delivery) (context.Context, trace.Span) {
	tp, _ := d.Headers[correlation.TraceparentHeader].(string)
	if !correlation.ValidTraceparent(tp) {
		tp = ""
	}
	if w.tracer == nil {
		if tp != "" {
			ctx = correlation.WithTraceparent(ctx, tp)
		}
		return ctx, nil
	}
	parent := ctx
	if tp != "" {
		parent = telemetry.Propagator.Extract(ctx, headerCarrier(d.Headers))
	}
	return w.tracer.Start(parent, w.cfg.Conn.topo.Queue+" process", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "rabbitmq"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", w.cfg.Conn.topo.Queue),
			attribute.String("messaging.message.id", d.MessageId),
			attribute.Int("orderflow.attempt", d.Attempt),
		))
}

// endProcess ends a process span, failed when err is not nil.
func endProcess(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
