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
// confirmed it (publisher confirms) and did not return it (messages are
// mandatory: one that reaches no queue, its queue deleted, comes back
// before its confirm); a nack, a return, a closed channel or a lost
// connection leaves it and every row after it for the relay's next batch,
// on a new channel (after a return, with the topology declared again).
type Publisher struct {
	conn *Conn

	mu      sync.Mutex
	ch      *amqp.Channel    // in confirm mode; nil after a failure
	returns chan amqp.Return // ch's returned messages
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
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, m.Topic, p.conn.topo.RoutingKey, true, false, publishing(m))
		if err != nil {
			p.drop()
			return p.confirmed(ctx, msgs, confirms, fmt.Errorf("rabbit: publish %s: %w", m.EventID, err))
		}
		confirms = append(confirms, dc)
	}
	return p.confirmed(ctx, msgs, confirms, nil)
}

// confirmed waits for confirms in order and returns how many from the
// first were acked and not returned, with cause, the first nack or the
// first return as the error. The broker sends a message's return before
// its confirm, and the library hands both over in that order, so a
// message's return is in hand once its confirm is.
func (p *Publisher) confirmed(ctx context.Context, msgs []outbox.Message, confirms []*amqp.DeferredConfirmation, cause error) (int, error) {
	returned := map[string]amqp.Return{}
	for i, dc := range confirms {
		if err := p.await(ctx, dc, returned); err != nil {
			p.drop()
			return i, err
		}
		if r, ok := returned[msgs[i].EventID.String()]; ok {
			p.drop()
			err := fmt.Errorf("rabbit: message %s returned unroutable (%d %s): no queue bound to exchange %s for %q",
				msgs[i].EventID, r.ReplyCode, r.ReplyText, r.Exchange, r.RoutingKey)
			if rerr := p.conn.Redeclare(ctx); rerr != nil {
				err = fmt.Errorf("%w; declaring the topology again: %w", err, rerr)
			}
			return i, err
		}
		if !dc.Acked() {
			p.drop()
			return i, fmt.Errorf("rabbit: broker did not confirm message %d of %d (nack or channel closed)", i+1, len(confirms))
		}
	}
	return len(confirms), cause
}

// await waits for dc, collecting returns meanwhile (the library blocks
// until each is taken) and those already in hand once dc is done.
func (p *Publisher) await(ctx context.Context, dc *amqp.DeferredConfirmation, returned map[string]amqp.Return) error {
	take := func(r amqp.Return, ok bool) {
		if !ok {
			p.returns = nil // the channel closed; dc is done (nacked) too
			return
		}
		returned[r.MessageId] = r
	}
	for {
		select {
		case r, ok := <-p.returns:
			take(r, ok)
		case <-dc.Done():
			for {
				select {
				case r, ok := <-p.returns:
					take(r, ok)
				default:
					return nil
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
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
	p.ch, p.returns = ch, ch.NotifyReturn(make(chan amqp.Return, 16))
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
