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

// Decoder is Dispatch's batch-side twin: a BatchHandler decodes each
// message by its event's type into a record of its own, R, before applying
// the batch set-based, and names each event it handles once:
//
//	var decoder consumer.Decoder[record]
//	consumer.Decodes(&decoder, func(e *contract.PaymentCaptured, msg consumer.Message) (record, error) { ... })
//	... service.Spec{Events: decoder.Events()}
//
// With Events() as Config.Events the runner passes over every other event.
type Decoder[R any] struct {
	routes map[string]func(Message) (R, error)
	names  []string // in the order registered
}

// Decodes makes fn the decoder of E's messages into R. It panics when E
// already has one.
func Decodes[E any, P interface {
	*E
	contract.Event
}, R any](d *Decoder[R], fn func(e P, msg Message) (R, error)) {
	name := P(new(E)).Name()
	if d.routes == nil {
		d.routes = map[string]func(Message) (R, error){}
	}
	if _, dup := d.routes[name]; dup {
		panic("consumer: two decoders for " + name)
	}
	d.routes[name] = func(msg Message) (R, error) {
		e := P(new(E))
		if err := msg.Decode(e); err != nil {
			var zero R
			return zero, err
		}
		return fn(e, msg)
	}
	d.names = append(d.names, name)
}

// Events are the events d decodes, in the order registered.
func (d *Decoder[R]) Events() []string { return slices.Clone(d.names) }

// Decode decodes msg into R; ok is false, with no error, for an event d
// has no decoder for.
func (d *Decoder[R]) Decode(msg Message) (r R, ok bool, err error) {
	fn, ok := d.routes[msg.Envelope.Event]
	if !ok {
		return r, false, nil
	}
	r, err = fn(msg)
	return r, err == nil, err
}
