package warehouse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/timer"
	"github.com/orderflow/orderflow/services/warehouse/internal/warehousedb"
)

// Shipment statuses, as GET /shipments/{orderId} shows them.
const (
	statusScheduled   = "scheduled"
	statusShipped     = "shipped"
	statusCancelled   = "cancelled"
	statusUnavailable = "unavailable"
)

// timerShip is the kind of the durable timer that ships a scheduled pick;
// its key is the orderId.
const timerShip = "ship"

// shipPayload is the ship timer's payload: the pick, and what the
// OrderShipped event should carry of the transaction that scheduled it.
type shipPayload struct {
	PickID        uuid.UUID `json:"pickId"`
	CorrelationID string    `json:"correlationId,omitempty"`
	Traceparent   string    `json:"traceparent,omitempty"`
}

// handler applies the events warehouse consumes and fires its ship timers.
type handler struct {
	outbox       *outbox.Outbox
	defaultStock int64
	shipDelay    time.Duration
	log          *slog.Logger
}

// handled are the events handle acts on, one case each; the consumer
// passes over the rest of the topics without a transaction.
var handled = []string{"PaymentCaptured", "OrderCancelled"}

// handle is the consumer.Handler: it routes by event name. The runner has
// taken the order's lock (outbox.LockKey), so one order's transactions,
// including a firing of its ship timer, serialize. Events warehouse has no
// business with are ignored.
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
		return h.orderCancelled(ctx, tx, &ev)
	default:
		return nil
	}
}

// prepare is the consumer's Prepare for a batch: it locks the stock rows of
// every PaymentCaptured in the batch at once, in SKU order, before any
// handler runs. The handlers then find their rows held (at or below the
// transaction's greatest locked SKU, so lockStock takes them with NOWAIT,
// instantly) and the batch is not split at every SKU that sorts below an
// earlier order's; batches on other partitions wait for it as a whole, in
// the same order, and never deadlock with it.
func (h *handler) prepare(ctx context.Context, tx pgx.Tx, msgs []consumer.Message) error {
	var skus []string
	for _, msg := range msgs {
		if msg.Envelope.Event != "PaymentCaptured" {
			continue
		}
		var ev contract.PaymentCaptured
		if err := msg.Decode(&ev); err != nil {
			return err
		}
		for _, it := range ev.Items {
			skus = append(skus, it.SKU)
		}
	}
	slices.Sort(skus)
	return lockStock(ctx, warehousedb.New(tx), slices.Compact(skus), h.defaultStock)
}

// lines adds up the quantities of items per SKU and returns the SKUs in
// byte order (the stock lock order) with their quantities.
func lines(items []contract.Item) (skus []string, quantities []int64) {
	sum := make(map[string]int64, len(items))
	for _, it := range items {
		sum[it.SKU] += int64(it.Quantity)
	}
	skus = make([]string, 0, len(sum))
	for sku := range sum {
		skus = append(skus, sku)
	}
	slices.Sort(skus)
	quantities = make([]int64, len(skus))
	for i, sku := range skus {
		quantities[i] = sum[sku]
	}
	return skus, quantities
}

// paymentCaptured reserves the order's items all or nothing. Enough stock:
// the units leave available, a pick is scheduled with its ship timer, and
// PickScheduled is emitted. Not enough of any SKU: nothing is reserved, the
// shipment is recorded unavailable and StockUnavailable names the short
// SKUs. An order warehouse has decided on already (a redelivery, or a
// cancellation that came first) changes nothing.
func (h *handler) paymentCaptured(ctx context.Context, tx pgx.Tx, ev *contract.PaymentCaptured) error {
	orderID, err := consumer.ParseOrderID(ev.OrderID)
	if err != nil {
		return err
	}
	q := warehousedb.New(tx)
	if s, err := q.GetShipment(ctx, orderID); err == nil {
		if s.Status == statusCancelled && !s.PickID.Valid {
			h.log.InfoContext(ctx, "payment captured for an order cancelled before: nothing reserved", "order_id", ev.OrderID)
		}
		return nil
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("get shipment: %w", err)
	}

	skus, quantities := lines(ev.Items)
	if err := lockStock(ctx, q, skus, h.defaultStock); err != nil {
		return err
	}
	levels, err := q.GetStockLevels(ctx, skus)
	if err != nil {
		return fmt.Errorf("get stock levels: %w", err)
	}
	available := make(map[string]int64, len(levels))
	for _, l := range levels {
		available[l.Sku] = l.Available
	}
	var short []string
	for i, sku := range skus {
		if available[sku] < quantities[i] {
			short = append(short, sku)
		}
	}

	if len(short) > 0 {
		if err := h.insertShipment(ctx, q, orderID, statusUnavailable, uuid.Nil, skus, quantities); err != nil {
			return err
		}
		out := &contract.StockUnavailable{
			Envelope: contract.Envelope{Event: "StockUnavailable", OrderID: ev.OrderID},
			SKUs:     short,
		}
		if err := h.outbox.Write(ctx, tx, out); err != nil {
			return fmt.Errorf("write StockUnavailable: %w", err)
		}
		return nil
	}

	deltas := make([]int64, len(quantities))
	for i, n := range quantities {
		deltas[i] = -n
	}
	if err := q.AddStock(ctx, warehousedb.AddStockParams{Skus: skus, Deltas: deltas}); err != nil {
		return fmt.Errorf("reserve stock: %w", err)
	}
	pickID, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("new pick id: %w", err)
	}
	if err := h.insertShipment(ctx, q, orderID, statusScheduled, pickID, skus, quantities); err != nil {
		return err
	}
	payload, err := json.Marshal(shipPayload{
		PickID:        pickID,
		CorrelationID: correlation.ID(ctx),
		Traceparent:   correlation.Traceparent(ctx),
	})
	if err != nil {
		return fmt.Errorf("encode ship timer: %w", err)
	}
	// The key is the orderId as the events carry it: the string the
	// consumer locks, so the timer worker takes the same lock.
	if _, err := timer.Schedule(ctx, tx, timerShip, ev.OrderID, time.Now().Add(h.shipDelay), payload); err != nil {
		return err
	}
	out := &contract.PickScheduled{
		Envelope: contract.Envelope{Event: "PickScheduled", OrderID: ev.OrderID},
		PickID:   pickID.String(),
	}
	if err := h.outbox.Write(ctx, tx, out); err != nil {
		return fmt.Errorf("write PickScheduled: %w", err)
	}
	return nil
}

// insertShipment records the order's outcome and its lines; the lines
// count as reserved while the pick is scheduled.
func (h *handler) insertShipment(ctx context.Context, q *warehousedb.Queries, orderID uuid.UUID, status string,
	pickID uuid.UUID, skus []string, quantities []int64) error {
	err := q.InsertShipment(ctx, warehousedb.InsertShipmentParams{
		OrderID: orderID,
		Status:  status,
		PickID:  pgtype.UUID{Bytes: pickID, Valid: pickID != uuid.Nil},
	})
	if err != nil {
		return fmt.Errorf("insert shipment: %w", err)
	}
	err = q.InsertLines(ctx, warehousedb.InsertLinesParams{
		OrderID: orderID, Skus: skus, Quantities: quantities, Reserved: status == statusScheduled,
	})
	if err != nil {
		return fmt.Errorf("insert shipment lines: %w", err)
	}
	return nil
}

// orderCancelled cancels a scheduled pick: its ship timer is cancelled,
// its units return to available, and PickCancelled is emitted. With no
// shipment yet, the cancellation is remembered so the later PaymentCaptured
// reserves nothing. A shipped, unavailable or already cancelled order
// stays as it is.
func (h *handler) orderCancelled(ctx context.Context, tx pgx.Tx, ev *contract.OrderCancelled) error {
	orderID, err := consumer.ParseOrderID(ev.OrderID)
	if err != nil {
		return err
	}
	q := warehousedb.New(tx)
	s, err := q.GetShipment(ctx, orderID)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := q.FlagCancelled(ctx, warehousedb.FlagCancelledParams{OrderID: orderID, CancelReason: ev.Reason}); err != nil {
			return fmt.Errorf("flag cancelled: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("get shipment: %w", err)
	}
	switch s.Status {
	case statusScheduled:
	case statusShipped:
		h.log.InfoContext(ctx, "order cancelled after its pick shipped: nothing to cancel", "order_id", ev.OrderID)
		return nil
	default: // unavailable (nothing was reserved) or cancelled already
		return nil
	}

	// The timer cannot be firing now: its worker would hold the order's
	// lock, which this transaction holds. The shipment's status is what
	// the ship timer checks, so even a timer that escaped being cancelled
	// would ship nothing.
	if ok, err := timer.Cancel(ctx, tx, timerShip, ev.OrderID); err != nil {
		return err
	} else if !ok {
		h.log.WarnContext(ctx, "scheduled pick had no pending ship timer", "order_id", ev.OrderID)
	}
	released, err := q.ReleaseLines(ctx, orderID)
	if err != nil {
		return fmt.Errorf("release lines: %w", err)
	}
	slices.SortFunc(released, func(a, b warehousedb.ReleaseLinesRow) int { return strings.Compare(a.Sku, b.Sku) })
	skus := make([]string, len(released))
	quantities := make([]int64, len(released))
	for i, l := range released {
		skus[i], quantities[i] = l.Sku, l.Quantity
	}
	if err := lockStock(ctx, q, skus, h.defaultStock); err != nil {
		return err
	}
	if err := q.AddStock(ctx, warehousedb.AddStockParams{Skus: skus, Deltas: quantities}); err != nil {
		return fmt.Errorf("return stock: %w", err)
	}
	if _, err := q.CancelShipment(ctx, warehousedb.CancelShipmentParams{OrderID: orderID, CancelReason: ev.Reason}); err != nil {
		return fmt.Errorf("cancel shipment: %w", err)
	}
	out := &contract.PickCancelled{
		Envelope: contract.Envelope{Event: "PickCancelled", OrderID: ev.OrderID},
		PickID:   uuid.UUID(s.PickID.Bytes).String(),
	}
	if err := h.outbox.Write(ctx, tx, out); err != nil {
		return fmt.Errorf("write PickCancelled: %w", err)
	}
	return nil
}

// ship is the ship timer's FireFunc: the scheduled pick ships with a new
// tracking id and OrderShipped is emitted. It writes only the order's own
// rows (its shipment and lines), never a stock row: the units left
// available when they were reserved, and "reserved" counts only lines of
// scheduled picks. So a batch of firings, which holds many orders' locks,
// never waits on a reservation. A pick that is no longer scheduled ships
// nothing.
func (h *handler) ship(ctx context.Context, tx pgx.Tx, t timer.Timer) error {
	var p shipPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		h.log.WarnContext(ctx, "ship timer payload unreadable; shipping without its correlation id", "key", t.Key, "err", err)
	}
	if p.CorrelationID != "" {
		ctx = correlation.WithID(ctx, p.CorrelationID)
	}
	if p.Traceparent != "" {
		ctx = correlation.WithTraceparent(ctx, p.Traceparent)
	}
	orderID, err := uuid.Parse(t.Key)
	if err != nil {
		return fmt.Errorf("ship timer key %q: %w", t.Key, err)
	}
	trackingID := newTrackingID()
	q := warehousedb.New(tx)
	s, err := q.ShipShipment(ctx, warehousedb.ShipShipmentParams{
		OrderID: orderID, TrackingID: pgtype.Text{String: trackingID, Valid: true},
	})
	if errors.Is(err, pgx.ErrNoRows) {
		h.log.InfoContext(ctx, "ship timer fired for a pick that is not scheduled: nothing shipped", "order_id", t.Key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("ship: %w", err)
	}
	if _, err := q.ReleaseLines(ctx, orderID); err != nil {
		return fmt.Errorf("release lines: %w", err)
	}
	out := &contract.OrderShipped{
		Envelope:   contract.Envelope{Event: "OrderShipped", OrderID: t.Key},
		PickID:     uuid.UUID(s.PickID.Bytes).String(),
		TrackingID: trackingID,
	}
	if err := h.outbox.Write(ctx, tx, out); err != nil {
		return fmt.Errorf("write OrderShipped: %w", err)
	}
	h.log.InfoContext(ctx, "pick shipped", "order_id", t.Key, "pick_id", out.PickID, "tracking_id", trackingID)
	return nil
}

// newTrackingID returns "TRK-" and 16 random upper-case hex digits.
func newTrackingID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "TRK-" + strings.ToUpper(hex.EncodeToString(b))
}
