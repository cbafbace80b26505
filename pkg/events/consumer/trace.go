package consumer

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracing is the consumer's part of a trace (OpenTelemetry messaging
// conventions): kotel's hooks give each fetched record a "<topic> receive"
// span, child of the producer's "<topic> publish"; the runner starts a
// "<topic> process" span under it for each attempt at the record, and the
// handler's outbox rows and queries are children of that. A transaction
// of several records gets one "<service> batch" span of its own, linked to
// each record's process span. Nil when tracing is off.
type tracing struct {
	kotel   *kotel.Tracer
	tracer  trace.Tracer
	service string
}

func newTracing(tp trace.TracerProvider, kt *kotel.Tracer, service string) *tracing {
	if tp == nil || kt == nil {
		return nil
	}
	return &tracing{kotel: kt, tracer: tp.Tracer("github.com/orderflow/orderflow/pkg/events/consumer"), service: service}
}

// start begins msg's process span; end it with endSpan.
func (t *tracing) start(rec *kgo.Record, msg *Message) {
	if t == nil {
		return
	}
	_, msg.span = t.kotel.WithProcessSpan(rec)
	if msg.Envelope.Event != "" {
		msg.span.SetAttributes(
			attribute.String("orderflow.event", msg.Envelope.Event),
			attribute.String("orderflow.order_id", msg.Envelope.OrderID),
			attribute.String("messaging.message.id", msg.Envelope.EventID),
		)
	}
}

// errNotCommitted ends the process span of a record its batch did not
// commit: it is handled again, alone, under a span of its own.
var errNotCommitted = errors.New("not committed with its batch; handled again alone")

// endSpan ends msg's process span, failed when err is not nil.
func endSpan(msg Message, err error) {
	if msg.span == nil {
		return
	}
	if err != nil {
		msg.span.SetStatus(codes.Error, err.Error())
	}
	msg.span.End()
}

// endSpans ends the process spans of msgs.
func endSpans(msgs []Message, err error) {
	for _, m := range msgs {
		endSpan(m, err)
	}
}

// batch starts the span of one transaction over msgs, linked to each
// message's process span: a transaction is no single record's child.
func (t *tracing) batch(ctx context.Context, msgs []Message) (context.Context, trace.Span) {
	if t == nil || len(msgs) == 0 {
		return ctx, nil
	}
	if len(msgs) == 1 && msgs[0].span != nil {
		return msgs[0].Context(ctx), nil // one record: its own span is the parent
	}
	links := make([]trace.Link, 0, len(msgs))
	for _, m := range msgs {
		if m.span != nil {
			links = append(links, trace.Link{SpanContext: m.span.SpanContext()})
		}
	}
	return t.tracer.Start(ctx, t.service+" batch",
		trace.WithNewRoot(), trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(msgs))))
}

// endBatchSpan ends a transaction's span, failed when err is not nil.
func endBatchSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// recordAttempt notes a failed attempt on the span in ctx.
func recordAttempt(ctx context.Context, err error) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.RecordError(err)
	}
}
