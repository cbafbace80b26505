package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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

// errGatewayUnavailable is tok_flaky's transient failure; the consumer
// retries the record.
var errGatewayUnavailable = errors.New("payment gateway temporarily unavailable")

// handler applies the events payments consumes.
type handler struct {
	pool            *pgxpool.Pool
	outbox          *outbox.Outbox
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
		n, err := h.countFlakyAttempt(ctx, orderID)
		if err != nil {
			return err
		}
		if n <= flakyFailures {
			return fmt.Errorf("charge order %s, attempt %d: %w", ev.OrderID, n, errGatewayUnavailable)
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

// countFlakyAttempt counts one tok_flaky charge attempt in its own
// transaction on the pool, so the count survives the rollback of the
// handler's failing transaction.
func (h *handler) countFlakyAttempt(ctx context.Context, orderID uuid.UUID) (int32, error) {
	n, err := paymentsdb.New(h.pool).CountFlakyAttempt(ctx, orderID)
	if err != nil {
		return 0, fmt.Errorf("count flaky attempt: %w", err)
	}
	return n, nil
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
