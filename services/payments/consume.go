package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

// The fake gateway's payment tokens (DESIGN.md). Any other token is
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
	log             *slog.Logger
}

// handled are the events handle acts on, one case each; the consumer
// passes over the rest of the topics without a transaction.
var handled = []string{"OrderPlaced", "OrderCancelled", "StockUnavailable"}

// handle is the consumer.Handler: it routes by event name. The runner has
// taken the order's lock (outbox.LockKey), so one order's transactions
// serialize and its events are published in the order they committed.
// Events payments has no business with are ignored.
func (h *handler) handle(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
	switch msg.Envelope.Event {
	case "OrderPlaced":
		var ev contract.OrderPlaced
		if err := msg.Decode(&ev); err != nil {
			return err
		}
		return h.orderPlaced(ctx, tx, &ev)
	case "OrderCancelled":
		var ev contract.OrderCancelled
		if err := msg.Decode(&ev); err != nil {
			return err
		}
		return h.cancel(ctx, tx, ev.OrderID, ev.Reason)
	case "StockUnavailable":
		var ev contract.StockUnavailable
		if err := msg.Decode(&ev); err != nil {
			return err
		}
		return h.cancel(ctx, tx, ev.OrderID, reasonOutOfStock)
	default:
		return nil
	}
}

// orderPlaced charges the order once: a redelivered OrderPlaced finds the
// payment row and does nothing. An order cancelled before it was placed
// (seen in order_flags) is recorded as failed with reason
// cancelled_before_payment and announces nothing: there is no payment to
// fail or refund, and orders already knows it is cancelled.
func (h *handler) orderPlaced(ctx context.Context, tx pgx.Tx, ev *contract.OrderPlaced) error {
	orderID, err := consumer.ParseOrderID(ev.OrderID)
	if err != nil {
		return err
	}
	q := paymentsdb.New(tx)
	if _, err := q.GetPayment(ctx, orderID); err == nil {
		return nil // already decided
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("get payment: %w", err)
	}
	cancelled := false
	if flags, err := q.GetOrderFlags(ctx, orderID); err == nil {
		cancelled = flags.Cancelled
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("get order flags: %w", err)
	}

	status, reason, attempts := statusCaptured, "", int32(1)
	switch {
	case cancelled:
		status, reason = statusFailed, reasonCancelledFirst
	case ev.TotalCents > h.fraudLimitCents:
		status, reason = statusFailed, reasonFraud
	case ev.PaymentToken == tokenVisa:
	case ev.PaymentToken == tokenFlaky:
		n, err := h.flaky.charge(orderID, time.Now())
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
	if _, err := q.InsertPayment(ctx, paymentsdb.InsertPaymentParams{
		OrderID:     orderID,
		PaymentID:   paymentID,
		CustomerID:  ev.CustomerID,
		Email:       ev.Email,
		AmountCents: ev.TotalCents,
		Currency:    ev.Currency,
		Items:       items,
		Status:      status,
		Reason:      reason,
		Attempts:    attempts,
	}); err != nil {
		return fmt.Errorf("insert payment: %w", err)
	}

	var out contract.Event
	switch {
	case cancelled:
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
	if err := h.outbox.Write(ctx, tx, out); err != nil {
		return fmt.Errorf("write %s: %w", out.Name(), err)
	}
	return nil
}

// flakyGateway is the fake gateway's memory for tok_flaky, which fails
// the first flakyFailures charges of an order and then succeeds (DESIGN).
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
// refunded with reason; with no payment yet, the cancellation is remembered
// so the later OrderPlaced charges nothing; a failed or refunded payment
// stays as it is.
func (h *handler) cancel(ctx context.Context, tx pgx.Tx, orderIDStr, reason string) error {
	orderID, err := consumer.ParseOrderID(orderIDStr)
	if err != nil {
		return err
	}
	q := paymentsdb.New(tx)
	p, err := q.RefundPayment(ctx, paymentsdb.RefundPaymentParams{OrderID: orderID, Reason: reason})
	if err == nil {
		ev := &contract.PaymentRefunded{
			Envelope:    contract.Envelope{Event: "PaymentRefunded", OrderID: orderIDStr},
			PaymentID:   p.PaymentID.String(),
			CustomerID:  p.CustomerID,
			Email:       p.Email,
			AmountCents: p.AmountCents,
			Reason:      reason,
		}
		if err := h.outbox.Write(ctx, tx, ev); err != nil {
			return fmt.Errorf("write PaymentRefunded: %w", err)
		}
		return nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("refund payment: %w", err)
	}
	if _, err := q.GetPayment(ctx, orderID); err == nil {
		return nil // failed or already refunded
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("get payment: %w", err)
	}
	if err := q.FlagCancelled(ctx, paymentsdb.FlagCancelledParams{OrderID: orderID, CancelReason: reason}); err != nil {
		return fmt.Errorf("flag cancelled: %w", err)
	}
	return nil
}
