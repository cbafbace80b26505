package rabbit

import (
	"context"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/outbox"
)

// Publisher is the outbox.Publisher of a work queue: each outbox row
// becomes a persistent message to the row's topic (the exchange) with the
// topology's routing key, message_id = the row's id, correlation_id and
// the x-correlation-id header = its correlation id, type = its type, and
// traceparent when set. A row counts as published only once the broker
// confirmed it (publisher confirms); a nack, a closed channel or a lost
// connection leaves it and every row after it for the relay's next batch,
// on a new channel.
type Publisher struct {
	conn *Conn

	mu sync.Mutex
	ch *amqp.Channel // in confirm mode; nil after a failure
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
	for _, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, m.Topic, p.conn.topo.RoutingKey, false, false, publishing(m))
		if err != nil {
			p.drop()
			return p.confirmed(ctx, confirms, fmt.Errorf("rabbit: publish %s: %w", m.EventID, err))
		}
		confirms = append(confirms, dc)
	}
	return p.confirmed(ctx, confirms, nil)
}

// confirmed waits for confirms in order and returns how many from the
// first were acked, with cause or the first nack as the error.
func (p *Publisher) confirmed(ctx context.Context, confirms []*amqp.DeferredConfirmation, cause error) (int, error) {
	for i, dc := range confirms {
		acked, err := dc.WaitContext(ctx)
		if err != nil || !acked {
			p.drop()
			if err == nil {
				err = fmt.Errorf("rabbit: broker did not confirm message %d of %d (nack or channel closed)", i+1, len(confirms))
			}
			return i, err
		}
	}
	return len(confirms), cause
}

// channel returns the confirm-mode channel, opening one when needed.
func (p *Publisher) channel(ctx context.Context) (*amqp.Channel, error) {
	if p.ch != nil && !p.ch.IsClosed() {
		return p.ch, nil
	}
	ch, err := p.conn.Channel(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.conn.Bounded(func() error { return ch.Confirm(false) }); err != nil {
		_ = p.conn.Bounded(ch.Close)
		return nil, fmt.Errorf("rabbit: confirm mode: %w", err)
	}
	p.ch = ch
	return ch, nil
}

// drop forgets the channel after a failure; the next batch opens another.
func (p *Publisher) drop() {
	if p.ch != nil {
		_ = p.conn.Bounded(p.ch.Close)
		p.ch = nil
	}
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
