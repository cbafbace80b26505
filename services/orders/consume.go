package orders

// Consuming. orders reads the payments, warehouse and loyalty topics to keep
// each order's status, cancelReason, pointsAwarded and timeline; the
// consumer runner (package consumer) hands it whole batches, having taken
// their orders' locks and claimed their events in the inbox, in the
// transaction the handler runs in.
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
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

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

// handle is the consumer.BatchHandler. It locks the batch's orders in one
// statement, applies the events to them in memory in offset order (so
// several events of one order in a batch end exactly as if applied one by
// one), and writes back in three: the changed orders, the timeline entries
// and the OrderCancelled events of the orders StockUnavailable cancelled.
func (h *handler) handle(ctx context.Context, tx pgx.Tx, msgs []consumer.Message) error {
	ids := make([]uuid.UUID, 0, len(msgs))
	for _, msg := range msgs {
		// The runner checked the envelope against the schema (format uuid).
		id, err := uuid.Parse(msg.Envelope.OrderID)
		if err != nil {
			return &consumer.RecordError{Index: len(ids), Err: fmt.Errorf("orderId %q: %v: %w", msg.Envelope.OrderID, err, consumer.ErrPermanent)}
		}
		ids = append(ids, id)
	}
	q := ordersdb.New(tx)
	rows, err := q.LockOrders(ctx, slices.Compact(slices.SortedFunc(slices.Values(ids), uuidCompare)))
	if err != nil {
		return fmt.Errorf("lock %d orders: %w", len(ids), err)
	}
	orders := make(map[uuid.UUID]*ordersdb.LockOrdersRow, len(rows))
	for i := range rows {
		orders[rows[i].ID] = &rows[i]
	}

	var (
		changed   []uuid.UUID // in the order first changed
		isChanged = make(map[uuid.UUID]bool)
		timeline  ordersdb.InsertTimelineEventsParams
		announce  outbox.Batch
	)
	for i, msg := range msgs {
		env := msg.Envelope
		o := orders[ids[i]]
		if o == nil {
			h.log.WarnContext(msg.Context(ctx), "skipping an event about an unknown order",
				"event", env.Event, "event_id", env.EventID, "order_id", env.OrderID, "topic", msg.Topic)
			continue
		}
		eventID, err := uuid.Parse(env.EventID)
		if err != nil {
			return &consumer.RecordError{Index: i, Err: fmt.Errorf("eventId %q: %v: %w", env.EventID, err, consumer.ErrPermanent)}
		}
		m := moves[env.Event]
		moved := m.to != "" && slices.Contains(m.from, o.Status)
		if moved {
			o.Status = m.to
			if m.cancelReason != "" {
				o.CancelReason = pgtype.Text{String: m.cancelReason, Valid: true}
			}
		}
		if env.Event == "PointsAwarded" {
			var ev contract.PointsAwarded
			if err := json.Unmarshal(msg.Value, &ev); err != nil {
				return &consumer.RecordError{Index: i, Err: fmt.Errorf("decode PointsAwarded: %v: %w", err, consumer.ErrPermanent)}
			}
			o.PointsAwarded = ev.Points
		}
		// Every event joins the timeline and moves updated_at. The topic
		// names the emitting service: each is named after the one service
		// that emits on it (docs/design.md "Topics"), as ce_source repeats.
		if !isChanged[o.ID] {
			isChanged[o.ID] = true
			changed = append(changed, o.ID)
		}
		addTimeline(&timeline, o.ID, env.Event, eventID, msg.Topic, env.OccurredAt)
		if moved && m.to == statusCancelled {
			ev := cancelledEvent(o.ID, m.cancelReason)
			addTimeline(&timeline, o.ID, ev.Name(), uuid.MustParse(ev.EventID), serviceName, ev.OccurredAt)
			if err := announce.Add(msg.Context(ctx), ev); err != nil {
				return &consumer.RecordError{Index: i, Err: err}
			}
		}
	}

	if len(changed) > 0 {
		up := ordersdb.UpdateOrdersParams{
			Ids: changed, Statuses: make([]string, len(changed)),
			CancelReasons: make([]string, len(changed)), Points: make([]int64, len(changed)),
		}
		for j, id := range changed {
			o := orders[id]
			up.Statuses[j], up.CancelReasons[j], up.Points[j] = o.Status, o.CancelReason.String, o.PointsAwarded
		}
		if err := q.UpdateOrders(ctx, up); err != nil {
			return fmt.Errorf("update %d orders: %w", len(changed), err)
		}
		if err := q.InsertTimelineEvents(ctx, timeline); err != nil {
			return fmt.Errorf("insert %d timeline entries: %w", len(timeline.EventIds), err)
		}
	}
	if err := h.outbox.WriteBatch(ctx, tx, &announce); err != nil {
		return fmt.Errorf("write OrderCancelled: %w", err)
	}
	return nil
}

// addTimeline appends one entry to the timeline rows p will insert.
func addTimeline(p *ordersdb.InsertTimelineEventsParams, orderID uuid.UUID, event string, eventID uuid.UUID, service string, at time.Time) {
	p.OrderIds = append(p.OrderIds, orderID)
	p.Events = append(p.Events, event)
	p.EventIds = append(p.EventIds, eventID)
	p.Services = append(p.Services, service)
	p.OccurredAts = append(p.OccurredAts, at)
}

func uuidCompare(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) }
