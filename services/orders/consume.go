package orders

// Consuming. orders reads the payments, warehouse and loyalty topics to keep
// each order's status, cancelReason, pointsAwarded and timeline; the
// consumer runner (package consumer) has taken the order's lock and claimed
// the event in the inbox, in the transaction the handler runs in.
//
// Status rules. The status only moves forward:
//
//	placed       ── PaymentCaptured ─────────────────────► paid
//	placed       ── PaymentFailed ───────────────────────► payment_failed
//	placed, paid ── OrderShipped ────────────────────────► shipped
//	placed, paid ── StockUnavailable, POST .../cancel ───► cancelled
//
// shipped, payment_failed and cancelled are final. Every event, whether it
// moves the status or not, joins the order's timeline; PickScheduled,
// PickCancelled and PaymentRefunded do nothing else, and PointsAwarded
// sets pointsAwarded (whatever the status: the points were credited).
// StockUnavailable, when it cancels the order, also writes OrderCancelled
// (reason out_of_stock) to the outbox in the same transaction; since only
// the statement that moves an order to cancelled writes one, there is at
// most one per order, and never once it shipped.
//
// Cross-topic order. Each topic keeps one order's events in order, but the
// topics keep no order among them: the warehouse's OrderShipped can be
// handled before the PaymentCaptured that led to it, the refund before the
// StockUnavailable. So each rule is a guarded move ("to paid, only from
// placed") applied in one UPDATE, never a plain assignment: whatever order
// the events arrive in, the order ends where the furthest of them leads. A
// late PaymentCaptured finds the order shipped (or cancelled) and only
// joins the timeline. One race the rules cannot undo: a customer's cancel
// accepted while the warehouse's OrderShipped is still in flight leaves the
// order cancelled (its OrderCancelled is out, payments refunds); the
// timeline then shows both.
//
// Duplicates: the inbox drops a redelivered event; the timeline's unique
// event_id and the guarded moves make a repeat harmless even after its inbox
// row was pruned. An event about an order orders does not know is logged
// and skipped: orders stores every order before any other service hears of
// it, so retrying cannot make it appear.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/services/orders/internal/ordersdb"
)

// handler applies the events orders consumes.
type handler struct {
	outbox *outbox.Outbox
	log    *slog.Logger
}

// move is how an event changes an order's status: to to, only from one of
// from, setting cancelReason with it when that is not empty.
type move struct {
	from         []string
	to           string
	cancelReason string
}

// moves are the status rules of the file comment. Events not listed move
// nothing.
var moves = map[string]move{
	"PaymentCaptured":  {from: []string{statusPlaced}, to: statusPaid},
	"PaymentFailed":    {from: []string{statusPlaced}, to: statusPaymentFailed},
	"OrderShipped":     {from: []string{statusPlaced, statusPaid}, to: statusShipped},
	"StockUnavailable": {from: []string{statusPlaced, statusPaid}, to: statusCancelled, cancelReason: reasonOutOfStock},
}

// handle is the consumer.Handler: two statements per event, the order's
// update (status, points, updated_at) and its timeline entry, and for a
// StockUnavailable that cancels the order, its OrderCancelled.
func (h *handler) handle(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
	env := msg.Envelope
	// The runner checked both against the event's schema (format uuid).
	orderID, err := uuid.Parse(env.OrderID)
	if err != nil {
		return fmt.Errorf("orderId %q: %v: %w", env.OrderID, err, consumer.ErrPermanent)
	}
	eventID, err := uuid.Parse(env.EventID)
	if err != nil {
		return fmt.Errorf("eventId %q: %v: %w", env.EventID, err, consumer.ErrPermanent)
	}

	m := moves[env.Event]
	params := ordersdb.ApplyEventParams{ID: orderID, FromStatuses: m.from, ToStatus: m.to}
	if params.FromStatuses == nil {
		params.FromStatuses = []string{} // not NULL: "= ANY" of an empty array is plainly false
	}
	if m.cancelReason != "" {
		params.CancelReason = pgtype.Text{String: m.cancelReason, Valid: true}
	}
	if env.Event == "PointsAwarded" {
		var ev contract.PointsAwarded
		if err := json.Unmarshal(msg.Value, &ev); err != nil {
			return fmt.Errorf("decode PointsAwarded: %v: %w", err, consumer.ErrPermanent)
		}
		params.PointsAwarded = pgtype.Int8{Int64: ev.Points, Valid: true}
	}

	q := ordersdb.New(tx)
	row, err := q.ApplyEvent(ctx, params)
	if errors.Is(err, pgx.ErrNoRows) {
		h.log.WarnContext(ctx, "skipping an event about an unknown order",
			"event", env.Event, "event_id", env.EventID, "order_id", env.OrderID, "topic", msg.Topic)
		return nil
	}
	if err != nil {
		return fmt.Errorf("apply %s to order %s: %w", env.Event, orderID, err)
	}
	// The topic names the emitting service: each is named after the one
	// service that emits on it (DESIGN "Topics"), as ce_source repeats.
	if _, err := q.InsertTimelineEvent(ctx, ordersdb.InsertTimelineEventParams{
		OrderID:    orderID,
		Event:      env.Event,
		EventID:    eventID,
		Service:    msg.Topic,
		OccurredAt: env.OccurredAt,
	}); err != nil {
		return fmt.Errorf("insert timeline: %w", err)
	}
	if m.to == statusCancelled && slices.Contains(m.from, row.PreviousStatus) {
		return announceCancelled(ctx, tx, h.outbox, orderID, m.cancelReason)
	}
	return nil
}
