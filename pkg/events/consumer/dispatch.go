package consumer

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/pkg/events/contract"
)

// Dispatch routes each message to the handler of its event's type, so a
// service names every event it handles once, by type:
//
//	var d consumer.Dispatch
//	consumer.On(&d, func(ctx context.Context, tx pgx.Tx, e *contract.PaymentCaptured, msg consumer.Message) error { ... })
//	consumer.On(&d, func(ctx context.Context, tx pgx.Tx, e *contract.OrderCancelled, msg consumer.Message) error { ... })
//	... service.Parts{Dispatch: &d}
//
// The runner takes Events() as Config.Events: the other events of the
// topics are passed over without a transaction. Each handler gets its
// event decoded (the runner has checked it against its schema).
type Dispatch struct {
	routes map[string]func(context.Context, pgx.Tx, Message) error
	names  []string // in the order registered
}

// On makes fn the handler of E's messages. It panics when E already has
// one: two handlers for one event is a build mistake.
func On[E any, P interface {
	*E
	contract.Event
}](d *Dispatch, fn func(ctx context.Context, tx pgx.Tx, e P, msg Message) error) {
	name := P(new(E)).Name()
	if d.routes == nil {
		d.routes = map[string]func(context.Context, pgx.Tx, Message) error{}
	}
	if _, dup := d.routes[name]; dup {
		panic("consumer: two handlers for " + name)
	}
	d.routes[name] = func(ctx context.Context, tx pgx.Tx, msg Message) error {
		e := P(new(E))
		if err := msg.Decode(e); err != nil {
			return err
		}
		return fn(ctx, tx, e, msg)
	}
	d.names = append(d.names, name)
}

// Events are the events d has handlers for, in the order registered.
func (d *Dispatch) Events() []string { return slices.Clone(d.names) }

// Handler is the per-record Handler that dispatches; an event without a
// handler never reaches it (Config.Events), and would be an error.
func (d *Dispatch) Handler() Handler {
	return func(ctx context.Context, tx pgx.Tx, msg Message) error {
		h, ok := d.routes[msg.Envelope.Event]
		if !ok {
			return fmt.Errorf("no handler for %s: %w", msg.Envelope.Event, ErrPermanent)
		}
		return h(ctx, tx, msg)
	}
}
