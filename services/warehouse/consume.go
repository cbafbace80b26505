package warehouse

// Consuming. The consumer runner (package consumer) hands warehouse whole
// batches of one partition's records in offset order, having locked their
// orders (outbox.LockKey, so one order's transactions, including a firing
// of its ship timer, serialize) and claimed their events in the inbox, in
// the transaction the handler runs in. The handler applies a batch with a
// statement per table, not a few per record:
//
//  1. the batch's shipments, with the reserved lines of scheduled picks
//     (GetShipments);
//  2. the stock rows of every SKU the batch may reserve or release, locked
//     in one statement in SKU order (lockStock);
//  3. each record applied in offset order to that state in memory, so
//     several records of one order, or many orders after the last units of
//     a SKU, end exactly as if applied one by one;
//  4. the changes written back: the stock, the shipments and their lines
//     (AddStock, UpsertShipments, UpsertLines), the ship timers scheduled
//     and cancelled (timer.ScheduleAll, timer.CancelAll) and the events
//     (one outbox.Batch).
//
// A record that cannot be handled (undecodable, or a string PostgreSQL
// cannot store) is named with a consumer.RecordError wrapping
// consumer.ErrPermanent: the records before it commit, it is
// dead-lettered, and the rest go on in the next batch.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

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
	tracer       trace.Tracer // timers' fire spans; nil when tracing is off
}

// record is one consumed event as the handler needs it.
type record struct {
	ctx     context.Context // the message's, with its correlation id
	kind    recordKind      // none for an event warehouse has no business with
	key     string          // the orderId as the event carries it: the order's lock and timer key
	orderID uuid.UUID
	lines   []line // PaymentCaptured's items, one per SKU (see lines)
	reason  string // OrderCancelled's
}

// line is one SKU of an order and its units.
type line struct {
	sku      string
	quantity int64
}

// shipment is one order's shipment as the batch has it so far.
type shipment struct {
	status       string
	pickID       uuid.UUID // uuid.Nil: no pick
	cancelReason string
	lines        []line // reserved while scheduled; else only those the batch writes
	changed      bool   // the row is to be written
	linesChanged bool   // its lines are to be written
}

// batch is the state one handle call works on and writes back.
type batch struct {
	shipments map[uuid.UUID]*shipment
	changed   []uuid.UUID      // orders whose shipment changed, in the order first changed
	available map[string]int64 // locked stock rows, as the batch leaves them
	locked    map[string]int64 // the same, as they were locked
	schedule  []timer.Entry
	cancel    []record // OrderCancelled of scheduled picks, whose timers are cancelled
	out       outbox.Batch
}

// handle is the consumer.BatchHandler: see "Consuming" above. Events
// warehouse has no business with are ignored.
func (h *handler) handle(ctx context.Context, tx pgx.Tx, msgs []consumer.Message) error {
	recs := make([]record, len(msgs))
	for i, msg := range msgs {
		r, ok, err := decoder.Decode(msg)
		if err != nil {
			return &consumer.RecordError{Index: i, Err: err}
		}
		if ok {
			r.ctx = msg.Context(ctx)
			recs[i] = r
		}
	}
	q := warehousedb.New(tx)
	b, err := h.load(ctx, q, recs)
	if err != nil {
		return err
	}
	for i, r := range recs {
		var err error
		switch r.kind {
		case capture:
			err = h.reserve(b, r)
		case cancellation:
			err = h.cancel(b, r)
		}
		if err != nil {
			return &consumer.RecordError{Index: i, Err: err}
		}
	}
	return h.write(ctx, tx, q, b)
}

// recordKind is what a record does.
type recordKind int

const (
	none         recordKind = iota // an event warehouse has no business with
	capture                        // PaymentCaptured: reserve and schedule a pick
	cancellation                   // OrderCancelled
)

// decoder decodes each event warehouse acts on into a record, each named
// once; the consumer passes over the rest of the topics without a
// transaction (Spec.Events). Its errors wrap consumer.ErrPermanent: no
// retry can fix them.
var decoder = func() *consumer.Decoder[record] {
	var d consumer.Decoder[record]
	consumer.Decodes(&d, func(ev *contract.PaymentCaptured, msg consumer.Message) (record, error) {
		r := record{kind: capture, key: ev.OrderID, lines: lines(ev.Items)}
		strs := make([]string, len(r.lines))
		for i, l := range r.lines {
			strs[i] = l.sku
		}
		return r.checked(msg, strs...)
	})
	consumer.Decodes(&d, func(ev *contract.OrderCancelled, msg consumer.Message) (record, error) {
		r := record{kind: cancellation, key: ev.OrderID, reason: ev.Reason}
		return r.checked(msg, ev.Reason)
	})
	return &d
}()

// checked completes r with its orderId once it and the strings r stores
// in text columns pass.
func (r record) checked(msg consumer.Message, strs ...string) (record, error) {
	var err error
	if r.orderID, err = consumer.ParseOrderID(r.key); err != nil {
		return record{}, err
	}
	// The schemas allow NUL; a text column does not, and the batch's
	// statements would fail as a whole without saying which record.
	for _, s := range strs {
		if strings.ContainsRune(s, 0) {
			return record{}, fmt.Errorf("%s: %q holds a NUL, which PostgreSQL cannot store: %w", msg.Envelope.Event, s, consumer.ErrPermanent)
		}
	}
	return r, nil
}

// lines adds up the quantities of items per SKU, in byte order of SKU.
func lines(items []contract.Item) []line {
	var ls []line
	at := make(map[string]int, len(items))
	for _, it := range items {
		i, ok := at[it.SKU]
		if !ok {
			i = len(ls)
			at[it.SKU] = i
			ls = append(ls, line{sku: it.SKU})
		}
		ls[i].quantity += int64(it.Quantity)
	}
	slices.SortFunc(ls, func(a, b line) int { return strings.Compare(a.sku, b.sku) })
	return ls
}

// load reads the batch's shipments and locks the stock rows its records
// may change: the items of each PaymentCaptured of an order without a
// shipment, and the reserved lines of each scheduled pick an
// OrderCancelled cancels.
func (h *handler) load(ctx context.Context, q *warehousedb.Queries, recs []record) (*batch, error) {
	ids := make([]uuid.UUID, 0, len(recs))
	for _, r := range recs {
		if r.kind != none {
			ids = append(ids, r.orderID)
		}
	}
	rows, err := q.GetShipments(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("get %d shipments: %w", len(ids), err)
	}
	b := &batch{shipments: make(map[uuid.UUID]*shipment, len(ids))}
	for _, row := range rows {
		s := b.shipments[row.OrderID]
		if s == nil {
			s = &shipment{status: row.Status, pickID: row.PickID.Bytes}
			b.shipments[row.OrderID] = s
		}
		if row.Sku.Valid {
			s.lines = append(s.lines, line{sku: row.Sku.String, quantity: row.Quantity.Int64})
		}
	}
	// Only an order's first record in the batch can reserve (a capture of
	// an order without a shipment), and only a cancellation of a pick
	// scheduled before can release what the batch did not reserve itself:
	// no other stock row is locked, or created, than one by one.
	var skus []string
	seen := make(map[uuid.UUID]bool, len(ids))
	for _, r := range recs {
		var ls []line
		switch s := b.shipments[r.orderID]; {
		case r.kind == capture && s == nil && !seen[r.orderID]:
			ls = r.lines
		case r.kind == cancellation && s != nil && s.status == statusScheduled:
			ls = s.lines
		}
		seen[r.orderID] = true
		for _, l := range ls {
			skus = append(skus, l.sku)
		}
	}
	if b.locked, err = lockStock(ctx, q, skus, h.defaultStock); err != nil {
		return nil, err
	}
	b.available = make(map[string]int64, len(b.locked))
	for sku, n := range b.locked {
		b.available[sku] = n
	}
	return b, nil
}

// change records that s, the shipment of orderID, is to be written.
func (b *batch) change(orderID uuid.UUID, s *shipment) {
	b.shipments[orderID] = s
	if !s.changed {
		s.changed = true
		b.changed = append(b.changed, orderID)
	}
}

// reserve applies a PaymentCaptured: the order's items are reserved all
// or nothing. Enough stock: the units leave available, a pick is
// scheduled with its ship timer, and PickScheduled is emitted. Not enough
// of any SKU: nothing is reserved, the shipment is recorded unavailable
// and StockUnavailable names the short SKUs in byte order. An order
// warehouse has decided on already (a cancellation that came first, or a
// second capture) changes nothing.
func (h *handler) reserve(b *batch, r record) error {
	if s := b.shipments[r.orderID]; s != nil {
		if s.status == statusCancelled && s.pickID == uuid.Nil {
			h.log.InfoContext(r.ctx, "payment captured for an order cancelled before: nothing reserved", "order_id", r.key)
		}
		return nil
	}
	s := &shipment{lines: r.lines, linesChanged: true}
	var short []string
	for _, l := range r.lines {
		if b.available[l.sku] < l.quantity {
			short = append(short, l.sku)
		}
	}
	if len(short) > 0 {
		s.status = statusUnavailable
		b.change(r.orderID, s)
		return b.out.Add(r.ctx, &contract.StockUnavailable{
			Envelope: contract.Envelope{Event: "StockUnavailable", OrderID: r.key},
			SKUs:     short,
		})
	}
	for _, l := range r.lines {
		b.available[l.sku] -= l.quantity
	}
	pickID, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("new pick id: %w", err)
	}
	s.status, s.pickID = statusScheduled, pickID
	b.change(r.orderID, s)
	payload, err := json.Marshal(shipPayload{
		PickID:        pickID,
		CorrelationID: correlation.ID(r.ctx),
		Traceparent:   correlation.Traceparent(r.ctx),
	})
	if err != nil {
		return fmt.Errorf("encode ship timer: %w", err)
	}
	// The key is the orderId as the events carry it: the string the
	// consumer locks, so the timer worker takes the same lock.
	b.schedule = append(b.schedule, timer.Entry{Kind: timerShip, Key: r.key, Due: time.Now().Add(h.shipDelay), Payload: payload})
	return b.out.Add(r.ctx, &contract.PickScheduled{
		Envelope: contract.Envelope{Event: "PickScheduled", OrderID: r.key},
		PickID:   pickID.String(),
	})
}

// cancel applies an OrderCancelled: a scheduled pick is cancelled, its
// ship timer too, its units return to available, and PickCancelled is
// emitted. With no shipment yet, the cancellation is remembered so the
// later PaymentCaptured reserves nothing. A shipped, unavailable or
// already cancelled order stays as it is.
func (h *handler) cancel(b *batch, r record) error {
	s := b.shipments[r.orderID]
	switch {
	case s == nil:
		b.change(r.orderID, &shipment{status: statusCancelled, cancelReason: r.reason})
		return nil
	case s.status == statusShipped:
		h.log.InfoContext(r.ctx, "order cancelled after its pick shipped: nothing to cancel", "order_id", r.key)
		return nil
	case s.status != statusScheduled: // unavailable (nothing was reserved) or cancelled already
		return nil
	}
	for _, l := range s.lines {
		b.available[l.sku] += l.quantity
	}
	s.status, s.cancelReason, s.linesChanged = statusCancelled, r.reason, true
	b.change(r.orderID, s)
	// The timer cannot be firing now: its worker would hold the order's
	// lock, which this transaction holds. The shipment's status is what
	// the ship timer checks, so even a timer that escaped being cancelled
	// would ship nothing.
	b.cancel = append(b.cancel, r)
	return b.out.Add(r.ctx, &contract.PickCancelled{
		Envelope: contract.Envelope{Event: "PickCancelled", OrderID: r.key},
		PickID:   s.pickID.String(),
	})
}

// write writes back what the batch changed, a statement each.
func (h *handler) write(ctx context.Context, tx pgx.Tx, q *warehousedb.Queries, b *batch) error {
	var stock warehousedb.AddStockParams
	for sku, n := range b.available {
		if d := n - b.locked[sku]; d != 0 {
			stock.Skus, stock.Deltas = append(stock.Skus, sku), append(stock.Deltas, d)
		}
	}
	if len(stock.Skus) > 0 {
		if err := q.AddStock(ctx, stock); err != nil {
			return fmt.Errorf("update %d stock rows: %w", len(stock.Skus), err)
		}
	}
	var ships warehousedb.UpsertShipmentsParams
	var ls warehousedb.UpsertLinesParams
	for _, id := range b.changed {
		s := b.shipments[id]
		ships.OrderIds, ships.Statuses = append(ships.OrderIds, id), append(ships.Statuses, s.status)
		ships.PickIds, ships.CancelReasons = append(ships.PickIds, s.pickID), append(ships.CancelReasons, s.cancelReason)
		if !s.linesChanged {
			continue
		}
		for _, l := range s.lines {
			ls.OrderIds, ls.Skus, ls.Quantities = append(ls.OrderIds, id), append(ls.Skus, l.sku), append(ls.Quantities, l.quantity)
			ls.Reserved = append(ls.Reserved, s.status == statusScheduled)
		}
	}
	if len(ships.OrderIds) > 0 {
		if err := q.UpsertShipments(ctx, ships); err != nil {
			return fmt.Errorf("write %d shipments: %w", len(ships.OrderIds), err)
		}
	}
	if len(ls.OrderIds) > 0 {
		if err := q.UpsertLines(ctx, ls); err != nil {
			return fmt.Errorf("write %d shipment lines: %w", len(ls.OrderIds), err)
		}
	}
	// Scheduled before cancelled: a pick scheduled and cancelled in one
	// batch leaves its timer cancelled, as one by one.
	if _, err := timer.ScheduleAll(ctx, tx, b.schedule); err != nil {
		return err
	}
	keys := make([]string, len(b.cancel))
	for i, r := range b.cancel {
		keys[i] = r.key
	}
	ok, err := timer.CancelAll(ctx, tx, timerShip, keys)
	if err != nil {
		return err
	}
	for i, r := range b.cancel {
		if !ok[i] {
			h.log.WarnContext(r.ctx, "scheduled pick had no pending ship timer", "order_id", r.key)
		}
	}
	if err := h.outbox.WriteBatch(ctx, tx, &b.out); err != nil {
		return fmt.Errorf("write %d events: %w", b.out.Len(), err)
	}
	return nil
}

// ship is the ship timer's BatchFireFunc: each scheduled pick ships with a
// new tracking id and OrderShipped is emitted, in three statements for
// the whole batch. It writes only the orders' own rows (their shipments
// and lines), never a stock row: the units left available when they were
// reserved, and "reserved" counts only lines of scheduled picks. So a
// batch of firings, which holds many orders' locks, never waits on a
// reservation. A pick that is no longer scheduled ships nothing.
func (h *handler) ship(ctx context.Context, tx pgx.Tx, timers []timer.Timer) error {
	p := warehousedb.ShipShipmentsParams{OrderIds: make([]uuid.UUID, len(timers)), TrackingIds: make([]string, len(timers))}
	for i, t := range timers {
		id, err := uuid.Parse(t.Key)
		if err != nil {
			return &timer.FireError{Index: i, Err: fmt.Errorf("ship timer key %q: %w", t.Key, err)}
		}
		p.OrderIds[i], p.TrackingIds[i] = id, newTrackingID()
	}
	rows, err := warehousedb.New(tx).ShipShipments(ctx, p)
	if err != nil {
		return fmt.Errorf("ship %d picks: %w", len(timers), err)
	}
	pickIDs := make(map[uuid.UUID]uuid.UUID, len(rows))
	for _, r := range rows {
		pickIDs[r.OrderID] = r.PickID.Bytes
	}
	var out outbox.Batch
	for i, t := range timers {
		tctx, end := h.timerContext(ctx, t)
		defer end()
		pickID, ok := pickIDs[p.OrderIds[i]]
		if !ok {
			h.log.InfoContext(tctx, "ship timer fired for a pick that is not scheduled: nothing shipped", "order_id", t.Key)
			continue
		}
		ev := &contract.OrderShipped{
			Envelope:   contract.Envelope{Event: "OrderShipped", OrderID: t.Key},
			PickID:     pickID.String(),
			TrackingID: p.TrackingIds[i],
		}
		if err := out.Add(tctx, ev); err != nil {
			return &timer.FireError{Index: i, Err: err}
		}
		h.log.DebugContext(tctx, "pick shipped", "order_id", t.Key, "pick_id", ev.PickID, "tracking_id", ev.TrackingID)
	}
	if err := h.outbox.WriteBatch(ctx, tx, &out); err != nil {
		return fmt.Errorf("write %d OrderShipped: %w", out.Len(), err)
	}
	// Each order's "order shipped" is the relay's line (outbox.Config.LogSteps).
	h.log.DebugContext(ctx, "picks shipped", "picks", out.Len())
	return nil
}

// timerContext is ctx carrying the correlation id and trace of the
// transaction that scheduled t (timer.Context); end ends its span.
func (h *handler) timerContext(ctx context.Context, t timer.Timer) (_ context.Context, end func()) {
	var p shipPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		h.log.WarnContext(ctx, "ship timer payload unreadable; shipping without its correlation id", "key", t.Key, "err", err)
	}
	return timer.Context(ctx, h.tracer, t, p.CorrelationID, p.Traceparent)
}

// newTrackingID returns "TRK-" and 16 random upper-case hex digits.
func newTrackingID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "TRK-" + strings.ToUpper(hex.EncodeToString(b))
}
