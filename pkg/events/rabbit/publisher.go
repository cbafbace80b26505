package rabbit

import (
	"context"
	"errors"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/outbox"
)

// Publisher is the outbox.Publisher of a work queue: each outbox row
// becomes a persistent message to the row's topic (the exchange) with the
// topology's routing key, message_id = the row's id, correlation_id and
// the x-correlation-id header = its correlation id, type = its type, and
// traceparent when set. A row counts as published only once the broker
// confirmed it (publisher confirms) and did not return it (messages are
// mandatory: one that reaches no queue, its queue deleted, comes back
// before its confirm). Publish waits for every confirm of a batch, so the
// error names every returned message (a *ReturnedError); a nack, a
// return, a closed channel or a lost connection leaves that row and every
// row after it for the relay's next batch (after a return, with the
// topology declared again; after anything else, on a new channel).
type Publisher struct {
	conn *Conn

	mu      sync.Mutex
	ch      *amqp.Channel // in confirm mode; nil after a failure
	returns *returnWatch  // ch's returned messages
	tracer  trace.Tracer  // nil when tracing is off (SetTracing)
}

// NewPublisher returns a Publisher on conn.
func NewPublisher(conn *Conn) *Publisher { return &Publisher{conn: conn} }

var _ outbox.Publisher = (*Publisher)(nil)

// Publish sends msgs and waits for their confirms; see Publisher.
func (p *Publisher) Publish(ctx context.Context, msgs []outbox.Message) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, err := p.channel(ctx)
	if err != nil {
		return 0, err
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	var spans []trace.Span
	if p.tracer != nil {
		spans = make([]trace.Span, 0, len(msgs))
	}
	var cause error
	for _, m := range msgs {
		pub := publishing(m)
		if span := p.publishSpan(m, m.Topic, &pub); span != nil {
			spans = append(spans, span)
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, m.Topic, p.conn.topo.RoutingKey, true, false, pub)
		if err != nil {
			cause = fmt.Errorf("rabbit: publish %s: %w", m.EventID, err)
			break
		}
		confirms = append(confirms, dc)
	}
	n, err := p.confirmed(ctx, msgs[:len(confirms)], confirms)
	if cause != nil {
		p.drop()
		err = errors.Join(err, cause)
	}
	endSpans(spans, n, err)
	return n, err
}

// confirmed waits for every confirm, in order, and returns how many
// messages from the first were acked and not returned. It goes on past a
// nack or a return so that every return of the batch is seen: the broker
// sends a message's return before its confirm, so once the last confirm
// is in, the watch holds them all.
func (p *Publisher) confirmed(ctx context.Context, msgs []outbox.Message, confirms []*amqp.DeferredConfirmation) (int, error) {
	n, waited := len(confirms), len(confirms)
	var errs []error
	for i, dc := range confirms {
		acked, err := dc.WaitContext(ctx)
		if err != nil {
			waited, n = i, min(n, i)
			errs = append(errs, err)
			break
		}
		if !acked && n > i {
			n = i
			errs = append(errs, fmt.Errorf("rabbit: broker did not confirm message %d of %d (nack or channel closed)", i+1, len(confirms)))
		}
	}
	p.returns.sync()
	var returned *ReturnedError
	for i, m := range msgs[:waited] {
		r, ok := p.returns.take(m.EventID.String())
		if !ok {
			continue
		}
		if returned == nil {
			returned = &ReturnedError{First: r}
		}
		returned.MessageIDs = append(returned.MessageIDs, r.MessageId)
		n = min(n, i)
	}
	p.returns.forget()
	if len(errs) > 0 {
		p.drop() // a nack, a closed channel, a wait cut short: start afresh
	}
	if returned != nil {
		err := error(returned)
		if rerr := p.conn.Redeclare(ctx); rerr != nil {
			err = fmt.Errorf("%w; declaring the topology again: %w", err, rerr)
		}
		errs = append([]error{err}, errs...)
	}
	return n, errors.Join(errs...)
}

// channel returns the confirm-mode channel, opening one (and its return
// watch) when needed.
func (p *Publisher) channel(ctx context.Context) (*amqp.Channel, error) {
	if p.ch != nil && !p.ch.IsClosed() {
		return p.ch, nil
	}
	p.drop() // closed under us: end its watch
	ch, err := p.conn.Channel(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.conn.Bounded(func() error { return ch.Confirm(false) }); err != nil {
		_ = p.conn.Bounded(ch.Close)
		return nil, fmt.Errorf("rabbit: confirm mode: %w", err)
	}
	p.ch, p.returns = ch, watchReturns(ch)
	return ch, nil
}

// drop closes the channel after a failure and waits for its watch; the
// next batch opens another.
func (p *Publisher) drop() {
	if p.ch != nil {
		_ = p.conn.Bounded(p.ch.Close)
		p.returns.wait()
		p.ch, p.returns = nil, nil
	}
}

// Close closes the publisher's channel and ends its return watch. Call it
// once nothing publishes any more, before closing the Conn.
func (p *Publisher) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop()
}

// Ready reports whether the broker answers.
func (p *Publisher) Ready(ctx context.Context) error { return p.conn.Ready(ctx) }

// publishing is the AMQP message of an outbox row.
func publishing(m outbox.Message) amqp.Publishing {
	headers := amqp.Table{headerCorrelation: m.CorrelationID}
	if m.Traceparent != "" {
		headers[correlation.TraceparentHeader] = m.Traceparent
	}
	return amqp.Publishing{
		Headers:       headers,
		ContentType:   "application/json",
		DeliveryMode:  amqp.Persistent,
		CorrelationId: m.CorrelationID,
		MessageId:     m.EventID.String(),
		Timestamp:     m.OccurredAt,
		Type:          m.Type,
		Body:          m.Payload,
	}
}
