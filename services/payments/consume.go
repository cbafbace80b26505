package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/services/payments/internal/paymentsdb"
)

// Payment statuses and failure reasons.
const (
	statusCaptured = "captured"
	statusFailed   = "failed"
	statusRefunded = "refunded"

	reasonDeclined       = "declined"
	reasonFraud          = "fraud_suspected"
	reasonCancelledFirst = "cancelled_before_payment"
	reasonOutOfStock     = "out_of_stock"
)

// The fake gateway's payment tokens (docs/design.md). Any other token is
// declined.
const (
	tokenVisa     = "tok_visa"
	tokenDeclined = "tok_declined"
	tokenFlaky    = "tok_flaky"

	// flakyFailures is how many attempts tok_flaky fails before it succeeds.
	flakyFailures = 2
)

// errGatewayUnavailable is tok_flaky's transient failure: a handler error
// (not the infrastructure's), so each one spends one of the consumer's
// attempts and the record is retried.
var errGatewayUnavailable = errors.New("payment gateway temporarily unavailable")

// handler applies the events payments consumes.
type handler struct {
	outbox          *outbox.Outbox
	flaky           *flakyGateway
	fraudLimitCents int64
}

// handle is the consumer.BatchHandler. The runner has locked the batch's
// orders (outbox.LockKeys) and claimed its events in the inbox, so no
// other transaction touches these orders' rows until it commits. handle
// reads every order's payment and remembered cancellation once, applies
// the messages in offset order to that state in memory (a second record of
// an order sees what the first did, exactly as if each had committed
// alone), then writes the final rows, a statement per table, and the
// batch's events in one outbox.Batch: five statements for a batch of a
// hundred, where one by one took two to four per record. Keeping the
// state in memory rather than splitting the batch at an order's second
// record matters here: an order's OrderPlaced and OrderCancelled often
// queue up together.
//
// A message that fails (tok_flaky's gateway, an undecodable event) is
// named in a consumer.RecordError before anything is written: the records
// before it commit without it and it is retried alone.
func (h *handler) handle(ctx context.Context, tx pgx.Tx, msgs []consumer.Message) error {
	ids := make([]uuid.UUID, len(msgs))
	for i, msg := range msgs {
		id, err := consumer.ParseOrderID(msg.Envelope.OrderID)
		if err != nil {
			return &consumer.RecordError{Index: i, Err: err}
		}
		ids[i] = id
	}
	q := paymentsdb.New(tx)
	b, err := load(ctx, q, ids)
	if err != nil {
		return err
	}
	for i, msg := range msgs {
		if err := h.apply(msg.Context(ctx), b, b.orders[ids[i]], msg); err != nil {
			return &consumer.RecordError{Index: i, Err: err}
		}
	}
	return b.write(ctx, tx, q, h.outbox)
}

// effect is what one message does to its order o in the batch b.
type effect func(ctx context.Context, h *handler, b *batch, o *order) error

// decoder decodes each event payments acts on into its effect, each named
// once; the consumer passes over the rest of the topics without a
// transaction (Spec.Events).
var decoder = func() *consumer.Decoder[effect] {
	var d consumer.Decoder[effect]
	consumer.Decodes(&d, func(ev *contract.OrderPlaced, _ consumer.Message) (effect, error) {
		return func(ctx context.Context, h *handler, b *batch, o *order) error { return h.orderPlaced(ctx, b, o, ev) }, nil
	})
	consumer.Decodes(&d, func(ev *contract.OrderCancelled, _ consumer.Message) (effect, error) {
		return func(ctx context.Context, _ *handler, b *batch, o *order) error {
			return b.cancel(ctx, o, ev.OrderID, ev.Reason)
		}, nil
	})
	consumer.Decodes(&d, func(ev *contract.StockUnavailable, _ consumer.Message) (effect, error) {
		return func(ctx context.Context, _ *handler, b *batch, o *order) error {
			return b.cancel(ctx, o, ev.OrderID, reasonOutOfStock)
		}, nil
	})
	return &d
}()

// apply applies msg to its order o; events payments has no business with
// are ignored.
func (h *handler) apply(ctx context.Context, b *batch, o *order, msg consumer.Message) error {
	do, ok, err := decoder.Decode(msg)
	if !ok {
		return err
	}
	return do(ctx, h, b, o)
}

// batch is the state of a batch's orders as its messages leave it, and
// the events they emit.
type batch struct {
	orders map[uuid.UUID]*order
	ids    []uuid.UUID // the keys of orders, first seen first
	events outbox.Batch
}

// order is one order's state in a batch.
type order struct {
	id        uuid.UUID
	payment   *paymentsdb.Payment // nil: payments has not decided on the order
	cancelled bool                // a cancellation came before any payment
	save      bool                // payment is new or refunded in this batch
	flag      bool                // the cancellation is this batch's to remember
	reason    string              // the cancellation's reason, when flag
}

// load reads the payments of the orders ids and, for those without one,
// the cancellations remembered.
func load(ctx context.Context, q *paymentsdb.Queries, ids []uuid.UUID) (*batch, error) {
	b := &batch{orders: make(map[uuid.UUID]*order, len(ids))}
	for _, id := range ids {
		if b.orders[id] == nil {
			b.orders[id] = &order{id: id}
			b.ids = append(b.ids, id)
		}
	}
	payments, err := q.GetPayments(ctx, b.ids)
	if err != nil {
		return nil, fmt.Errorf("get payments: %w", err)
	}
	for i := range payments {
		b.orders[payments[i].OrderID].payment = &payments[i]
	}
	var unpaid []uuid.UUID
	for _, id := range b.ids {
		if b.orders[id].payment == nil {
			unpaid = append(unpaid, id)
		}
	}
	if len(unpaid) == 0 {
		return b, nil
	}
	cancelled, err := q.GetCancelledOrders(ctx, unpaid)
	if err != nil {
		return nil, fmt.Errorf("get order flags: %w", err)
	}
	for _, id := range cancelled {
		b.orders[id].cancelled = true
	}
	return b, nil
}

// orderPlaced charges the order once: a redelivered OrderPlaced finds the
// payment and does nothing. An order cancelled before it was placed is
// recorded as failed with reason cancelled_before_payment and announces
// nothing: there is no payment to fail or refund, and orders already knows
// it is cancelled.
func (h *handler) orderPlaced(ctx context.Context, b *batch, o *order, ev *contract.OrderPlaced) error {
	if o.payment != nil {
		return nil // already decided
	}
	status, reason, attempts := statusCaptured, "", int32(1)
	switch {
	case o.cancelled:
		status, reason = statusFailed, reasonCancelledFirst
	case ev.TotalCents > h.fraudLimitCents:
		status, reason = statusFailed, reasonFraud
	case ev.PaymentToken == tokenVisa:
	case ev.PaymentToken == tokenFlaky:
		n, err := h.flaky.charge(o.id, time.Now())
		if err != nil {
			return fmt.Errorf("charge order %s, attempt %d: %w", ev.OrderID, n, err)
		}
		attempts = n
	default: // tok_declined and any token the gateway does not know
		status, reason = statusFailed, reasonDeclined
	}

	items, err := json.Marshal(ev.Items)
	if err != nil {
		return fmt.Errorf("encode items: %w", err)
	}
	paymentID, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("new payment id: %w", err)
	}
	o.payment = &paymentsdb.Payment{
		OrderID:     o.id,
		PaymentID:   paymentID,
		CustomerID:  ev.CustomerID,
		Email:       ev.Email,
		AmountCents: ev.TotalCents,
		Currency:    ev.Currency,
		Items:       items,
		Status:      status,
		Reason:      reason,
		Attempts:    attempts,
	}
	o.save = true

	var out contract.Event
	switch {
	case o.cancelled:
		return nil
	case status == statusCaptured:
		out = &contract.PaymentCaptured{
			Envelope:    contract.Envelope{Event: "PaymentCaptured", OrderID: ev.OrderID},
			PaymentID:   paymentID.String(),
			CustomerID:  ev.CustomerID,
			Email:       ev.Email,
			AmountCents: ev.TotalCents,
			Currency:    ev.Currency,
			Items:       ev.Items,
		}
	default:
		out = &contract.PaymentFailed{
			Envelope:   contract.Envelope{Event: "PaymentFailed", OrderID: ev.OrderID},
			CustomerID: ev.CustomerID,
			Email:      ev.Email,
			Reason:     reason,
		}
	}
	if err := b.events.Add(ctx, out); err != nil {
		return fmt.Errorf("write %s: %w", out.Name(), err)
	}
	return nil
}

// flakyGateway is the fake gateway's memory for tok_flaky, which fails
// the first flakyFailures charges of an order and then succeeds (docs/design.md).
//
// It keeps the count in the process, not in the database. The handler
// runs in the consumer's transaction, and a failed attempt rolls that back
// with any count written in it; a count written on a second pool
// connection made every flaky handler hold one connection while waiting
// for another, so as many flaky charges in hand as the pool has
// connections waited on each other for ever. In memory the count needs no
// connection and outlives the rollbacks. It counts failures, not calls: a
// success that was rolled back anyway (a later record of its batch
// failed, the commit failed) is charged again and succeeds, so the
// consumer sees each order fail twice and succeed on its third attempt.
// What it does not outlive is a restart, or the order's partition moving
// to another instance: there the order fails twice more, and the new
// owner's retries (its attempt count is per process too) absorb it. An
// order is forgotten flakyForget after its last failure, long after its
// retries ended (the consumer's MaxRetryTime is 30 s).
type flakyGateway struct {
	mu     sync.Mutex
	failed map[uuid.UUID]flakyFailed
	pruned time.Time
}

// flakyFailed is how many charges of an order failed, the last when.
type flakyFailed struct {
	n    int32
	last time.Time
}

// flakyForget is how long an order's failures are remembered.
const flakyForget = 10 * time.Minute

func newFlakyGateway() *flakyGateway {
	return &flakyGateway{failed: map[uuid.UUID]flakyFailed{}}
}

// charge charges orderID at now: it returns the charge's attempt number,
// and errGatewayUnavailable for each of the first flakyFailures.
func (g *flakyGateway) charge(orderID uuid.UUID, now time.Time) (int32, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.pruned) > time.Minute {
		for id, f := range g.failed {
			if now.Sub(f.last) > flakyForget {
				delete(g.failed, id)
			}
		}
		g.pruned = now
	}
	f := g.failed[orderID]
	if f.n >= flakyFailures {
		return f.n + 1, nil
	}
	f.n, f.last = f.n+1, now
	g.failed[orderID] = f
	return f.n, errGatewayUnavailable
}

// cancel handles OrderCancelled and StockUnavailable: a captured payment is
// refunded with reason; with no payment yet, the cancellation is
// remembered (the first one's reason) so the later OrderPlaced charges
// nothing; a failed or refunded payment stays as it is.
func (b *batch) cancel(ctx context.Context, o *order, orderID, reason string) error {
	switch {
	case o.payment == nil:
		if !o.cancelled {
			o.cancelled, o.flag, o.reason = true, true, reason
		}
		return nil
	case o.payment.Status != statusCaptured:
		return nil // failed or already refunded
	}
	p := o.payment
	p.Status, p.Reason = statusRefunded, reason
	o.save = true
	ev := &contract.PaymentRefunded{
		Envelope:    contract.Envelope{Event: "PaymentRefunded", OrderID: orderID},
		PaymentID:   p.PaymentID.String(),
		CustomerID:  p.CustomerID,
		Email:       p.Email,
		AmountCents: p.AmountCents,
		Reason:      reason,
	}
	if err := b.events.Add(ctx, ev); err != nil {
		return fmt.Errorf("write PaymentRefunded: %w", err)
	}
	return nil
}

// write stores what the batch changed: its new and refunded payments in
// one statement, the cancellations to remember in another, its events in
// a third, each only when there is something to write.
func (b *batch) write(ctx context.Context, tx pgx.Tx, q *paymentsdb.Queries, ob *outbox.Outbox) error {
	var pay paymentsdb.SavePaymentsParams
	var flags paymentsdb.FlagCancelledParams
	for _, id := range b.ids {
		o := b.orders[id]
		if p := o.payment; o.save {
			pay.OrderIds = append(pay.OrderIds, p.OrderID)
			pay.PaymentIds = append(pay.PaymentIds, p.PaymentID)
			pay.CustomerIds = append(pay.CustomerIds, p.CustomerID)
			pay.Emails = append(pay.Emails, p.Email)
			pay.AmountCents = append(pay.AmountCents, p.AmountCents)
			pay.Currencies = append(pay.Currencies, p.Currency)
			pay.Items = append(pay.Items, string(p.Items))
			pay.Statuses = append(pay.Statuses, p.Status)
			pay.Reasons = append(pay.Reasons, p.Reason)
			pay.Attempts = append(pay.Attempts, p.Attempts)
		}
		if o.flag {
			flags.OrderIds = append(flags.OrderIds, id)
			flags.CancelReasons = append(flags.CancelReasons, o.reason)
		}
	}
	if len(pay.OrderIds) > 0 {
		if err := q.SavePayments(ctx, pay); err != nil {
			return fmt.Errorf("save payments: %w", err)
		}
	}
	if len(flags.OrderIds) > 0 {
		if err := q.FlagCancelled(ctx, flags); err != nil {
			return fmt.Errorf("flag cancelled: %w", err)
		}
	}
	return ob.WriteBatch(ctx, tx, &b.events)
}
