package loyalty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/timer"
	"github.com/orderflow/orderflow/services/loyalty/internal/loyaltydb"
)

// Award states (the awards table).
const (
	statePending = "pending"
	stateAwarded = "awarded"
	stateDropped = "dropped"
)

// timerAward is the kind of the award timers; their key is the orderId.
const timerAward = "award"

// centsPerPoint: one point per whole currency unit.
const centsPerPoint = 100

// points is what a payment of amountCents earns: floor(amountCents / 100).
func points(amountCents int64) int64 { return amountCents / centsPerPoint }

// awardPayload is an award timer's payload. The award row holds the
// customer and points too and is what the timer credits; the payload keeps
// them beside the timer for operators (timer.Get), and carries the
// capture's correlation id and traceparent to the PointsAwarded it causes.
type awardPayload struct {
	CustomerID    string `json:"customerId"`
	Points        int64  `json:"points"`
	CorrelationID string `json:"correlationId,omitempty"`
	Traceparent   string `json:"traceparent,omitempty"`
}

// handler applies the events loyalty consumes and fires its award timers.
type handler struct {
	outbox     *outbox.Outbox
	awardDelay time.Duration
	log        *slog.Logger
}

// handled are the events handle acts on, one case each; the consumer
// passes over the rest of the topics without a transaction.
var handled = []string{"PaymentCaptured", "OrderCancelled", "PaymentRefunded"}

// handle is the consumer.Handler: it routes by event name. The runner has
// taken the order's lock (outbox.LockKey), so a handler and the order's
// award timer never run at once. It writes only rows of the order (its
// award, its cancellation, its timer), so records of different orders
// batched in one transaction never wait on each other. Events loyalty has
// no business with are ignored.
func (h *handler) handle(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
	switch msg.Envelope.Event {
	case "PaymentCaptured":
		var ev contract.PaymentCaptured
		if err := msg.Decode(&ev); err != nil {
			return err
		}
		return h.paymentCaptured(ctx, tx, &ev)
	case "OrderCancelled":
		var ev contract.OrderCancelled
		if err := msg.Decode(&ev); err != nil {
			return err
		}
		return h.cancel(ctx, tx, ev.OrderID, ev.Reason)
	case "PaymentRefunded":
		var ev contract.PaymentRefunded
		if err := msg.Decode(&ev); err != nil {
			return err
		}
		return h.cancel(ctx, tx, ev.OrderID, "refunded: "+ev.Reason)
	default:
		return nil
	}
}

// paymentCaptured decides the order's award once: a later capture of the
// same order finds its award row and does nothing. A payment worth no
// points is ignored. An order cancelled before its capture gets a dropped
// award and no timer. Otherwise the award timer is scheduled, due
// awardDelay from now, beside a pending award row.
func (h *handler) paymentCaptured(ctx context.Context, tx pgx.Tx, ev *contract.PaymentCaptured) error {
	orderID, err := consumer.ParseOrderID(ev.OrderID)
	if err != nil {
		return err
	}
	q := loyaltydb.New(tx)
	if _, err := q.GetAward(ctx, orderID); err == nil {
		return nil // already decided
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("get award: %w", err)
	}
	pts := points(ev.AmountCents)
	if pts <= 0 {
		h.log.DebugContext(ctx, "payment worth no points", "order_id", ev.OrderID, "amount_cents", ev.AmountCents)
		return nil
	}

	award := loyaltydb.InsertAwardParams{OrderID: orderID, CustomerID: ev.CustomerID, Points: pts}
	c, err := q.GetCancellation(ctx, orderID)
	switch {
	case err == nil:
		award.State, award.Reason = stateDropped, c.Reason
		h.log.InfoContext(ctx, "order cancelled before its payment was captured: no points",
			"order_id", ev.OrderID, "reason", c.Reason)
	case errors.Is(err, pgx.ErrNoRows):
		due := time.Now().Add(h.awardDelay)
		payload, err := json.Marshal(awardPayload{
			CustomerID:    ev.CustomerID,
			Points:        pts,
			CorrelationID: correlation.ID(ctx),
			Traceparent:   correlation.Traceparent(ctx),
		})
		if err != nil {
			return fmt.Errorf("encode award timer: %w", err)
		}
		// The key is the orderId as the events carry it: the string the
		// consumer locks, so the timer worker takes the same lock.
		ok, err := timer.Schedule(ctx, tx, timerAward, ev.OrderID, due, payload)
		if err != nil {
			return err
		}
		if !ok {
			// The timer and the award row are written together, so a
			// timer without its row means the row was deleted by hand;
			// scheduling nothing is the side that cannot double an award.
			h.log.WarnContext(ctx, "award timer exists without its award row: nothing scheduled", "order_id", ev.OrderID)
			return nil
		}
		award.State, award.DueAt = statePending, pgtype.Timestamptz{Time: due, Valid: true}
	default:
		return fmt.Errorf("get cancellation: %w", err)
	}
	if err := q.InsertAward(ctx, award); err != nil {
		return fmt.Errorf("insert award: %w", err)
	}
	return nil
}

// cancel handles OrderCancelled and PaymentRefunded: the cancellation is
// remembered (for a capture still to come), and a pending award is dropped
// with its timer. An award that was already given stays: no clawback.
func (h *handler) cancel(ctx context.Context, tx pgx.Tx, orderIDStr, reason string) error {
	orderID, err := consumer.ParseOrderID(orderIDStr)
	if err != nil {
		return err
	}
	q := loyaltydb.New(tx)
	if err := q.RememberCancellation(ctx, loyaltydb.RememberCancellationParams{OrderID: orderID, Reason: reason}); err != nil {
		return fmt.Errorf("remember cancellation: %w", err)
	}
	a, err := q.DropAward(ctx, loyaltydb.DropAwardParams{OrderID: orderID, Reason: reason})
	if errors.Is(err, pgx.ErrNoRows) {
		given, err := q.GetAward(ctx, orderID)
		if err == nil && given.State == stateAwarded {
			h.log.InfoContext(ctx, "order cancelled after its points were awarded: points kept",
				"order_id", orderIDStr, "customer_id", given.CustomerID, "points", given.Points, "reason", reason)
		} else if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("get award: %w", err)
		}
		return nil // no award yet, dropped already, or awarded
	}
	if err != nil {
		return fmt.Errorf("drop award: %w", err)
	}
	// The timer cannot be firing now: its worker would hold the order's
	// lock, which this transaction holds. Were it gone, the award's state,
	// which the timer checks, keeps it from crediting anything.
	if ok, err := timer.Cancel(ctx, tx, timerAward, orderIDStr); err != nil {
		return err
	} else if !ok {
		h.log.WarnContext(ctx, "pending award had no pending award timer", "order_id", orderIDStr)
	}
	h.log.InfoContext(ctx, "pending award dropped", "order_id", orderIDStr, "customer_id", a.CustomerID,
		"points", a.Points, "reason", reason)
	return nil
}

// award is the award timer's FireFunc: the pending award becomes awarded,
// which adds its points to the customer's balance (the sum of their awarded
// rows), and PointsAwarded is emitted, all in the transaction that marks
// the timer fired. An award that is not pending (dropped) gives nothing.
//
// It writes only the order's own row, never a row shared with other orders
// such as a per-customer balance: the worker fires a batch of timers in one
// transaction, holding their orders' locks, and two instances' batches
// updating the same customers' rows in different orders deadlock (with a
// stored balance row, two instances and a handful of customers, nearly
// every concurrent pair of batches did).
func (h *handler) award(ctx context.Context, tx pgx.Tx, t timer.Timer) error {
	var p awardPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		h.log.WarnContext(ctx, "award timer payload unreadable; awarding without its correlation id", "key", t.Key, "err", err)
	}
	if p.CorrelationID != "" {
		ctx = correlation.WithID(ctx, p.CorrelationID)
	}
	if p.Traceparent != "" {
		ctx = correlation.WithTraceparent(ctx, p.Traceparent)
	}
	orderID, err := uuid.Parse(t.Key)
	if err != nil {
		return fmt.Errorf("award timer key %q: %w", t.Key, err)
	}
	q := loyaltydb.New(tx)
	a, err := q.MarkAwarded(ctx, orderID)
	if errors.Is(err, pgx.ErrNoRows) {
		h.log.InfoContext(ctx, "award timer fired for an award that is not pending: nothing awarded", "order_id", t.Key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("mark awarded: %w", err)
	}
	out := &contract.PointsAwarded{
		Envelope:   contract.Envelope{Event: "PointsAwarded", OrderID: t.Key},
		CustomerID: a.CustomerID,
		Points:     a.Points,
	}
	if err := h.outbox.Write(ctx, tx, out); err != nil {
		return fmt.Errorf("write PointsAwarded: %w", err)
	}
	h.log.InfoContext(ctx, "points awarded", "order_id", t.Key, "customer_id", a.CustomerID, "points", a.Points)
	return nil
}
