package loyalty

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

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
	tracer     trace.Tracer // timers' fire spans; nil when tracing is off
}

// handleBatch is the consumer.BatchHandler. The runner has taken the lock
// of every order of the batch (outbox.LockKeys), so no award timer of
// theirs fires meanwhile and their rows read at the start stay as read.
// It reads the award and cancellation of every order of the batch in one
// statement, applies the records to that state in memory, in offset order,
// with the rules of applyCapture and applyCancel (so an order with several
// records in the batch ends as if they had been handled one by one), then
// writes what changed: the award timers scheduled (timer.ScheduleAll), the
// award rows (one upsert), the cancellations (one insert) and the timers
// of awards dropped while pending cancelled (timer.CancelAll). Five
// statements for the batch, whatever its size; it emits no event.
//
// Keeping each order's state across the batch, rather than ending the
// batch at an order's second record (consumer.ErrBatchConflict), keeps a
// capture and its refund, both on the payments topic, in one batch. The
// one record that ends its batch is a capture whose timer exists without
// its award row (see write): it goes on alone. A record that cannot be
// decoded, or carries text PostgreSQL refuses, is named in a RecordError
// and dead-lettered at once.
func (h *handler) handleBatch(ctx context.Context, tx pgx.Tx, msgs []consumer.Message) error {
	recs := make([]record, 0, len(msgs))
	for i, msg := range msgs {
		r, ok, err := decoder.Decode(msg)
		if err != nil {
			return &consumer.RecordError{Index: i, Err: err}
		}
		if ok {
			r.index = i
			recs = append(recs, r)
		}
	}
	q := loyaltydb.New(tx)
	orders, err := readOrders(ctx, q, recs)
	if err != nil {
		return err
	}
	for _, r := range recs {
		o, ctx := orders.byID[r.orderID], msgs[r.index].Context(ctx)
		if r.capture == nil {
			h.applyCancel(ctx, o, r.reason)
		} else if err := h.applyCapture(ctx, o, r); err != nil {
			return &consumer.RecordError{Index: r.index, Err: err}
		}
	}
	return h.write(ctx, tx, q, orders.list, len(msgs))
}

// record is a message loyalty acts on, decoded: a capture, or a
// cancellation (OrderCancelled, or PaymentRefunded).
type record struct {
	index   int // in the batch
	orderID uuid.UUID
	key     string                    // the orderId as the event carries it: the lock's and the timer's key
	capture *contract.PaymentCaptured // nil for a cancellation
	reason  string                    // a cancellation's
}

// decoder decodes each event loyalty acts on into a record, each named
// once; the consumer passes over the rest of the topics without a
// transaction (Spec.Events). Text loyalty stores that PostgreSQL would
// refuse (the schemas let NUL through) is a permanent error, named here:
// in a set-based statement it would fail the whole batch, not its record.
var decoder = func() *consumer.Decoder[record] {
	var d consumer.Decoder[record]
	consumer.Decodes(&d, func(ev *contract.PaymentCaptured, msg consumer.Message) (record, error) {
		return newRecord(msg, ev.CustomerID, record{capture: ev})
	})
	consumer.Decodes(&d, func(ev *contract.OrderCancelled, msg consumer.Message) (record, error) {
		return newRecord(msg, ev.Reason, record{reason: ev.Reason})
	})
	consumer.Decodes(&d, func(ev *contract.PaymentRefunded, msg consumer.Message) (record, error) {
		return newRecord(msg, ev.Reason, record{reason: "refunded: " + ev.Reason})
	})
	return &d
}()

// newRecord completes r, decoded from msg, once the text it stores passes.
func newRecord(msg consumer.Message, text string, r record) (record, error) {
	if err := contract.CheckText(text); err != nil {
		return r, fmt.Errorf("%s %q: %s: %w", msg.Envelope.Event, text, err, consumer.ErrPermanent)
	}
	r.key = msg.Envelope.OrderID
	var err error
	r.orderID, err = consumer.ParseOrderID(r.key)
	return r, err
}

// order is one order's loyalty state across a batch: as read at its
// start (stored*), then as its records left it.
type order struct {
	id           uuid.UUID
	key          string // its first record's orderId: the timer's key
	storedAward  string // the award's state as read; "" for no award row
	storedCancel bool   // a cancellation was remembered already
	award        string // the award's state now
	customerID   string
	points       int64
	reason       string    // why the award was dropped
	dueAt        time.Time // set when the batch scheduled the award's timer
	payload      []byte    // that timer's
	scheduledBy  int       // the index in the batch of the capture that scheduled it
	cancelTimer  bool      // the award was dropped while pending: its timer is cancelled
	cancelled    bool      // a cancellation is remembered
	cancelReason string    // the first cancellation's
}

// orders are the batch's orders, by id and in the order of their first
// record.
type orders struct {
	byID map[uuid.UUID]*order
	list []*order
}

// readOrders reads the award and cancellation of every order of recs in
// one statement.
func readOrders(ctx context.Context, q *loyaltydb.Queries, recs []record) (orders, error) {
	all := orders{byID: make(map[uuid.UUID]*order, len(recs))}
	ids := make([]uuid.UUID, 0, len(recs))
	for _, r := range recs {
		if all.byID[r.orderID] == nil {
			o := &order{id: r.orderID, key: r.key}
			all.byID[r.orderID], all.list, ids = o, append(all.list, o), append(ids, r.orderID)
		}
	}
	if len(ids) == 0 {
		return all, nil
	}
	rows, err := q.GetOrderStates(ctx, ids)
	if err != nil {
		return all, fmt.Errorf("read awards and cancellations: %w", err)
	}
	for _, row := range rows {
		o := all.byID[row.OrderID]
		o.storedAward, o.award, o.customerID, o.points = row.AwardState, row.AwardState, row.CustomerID, row.Points
		o.storedCancel, o.cancelled, o.cancelReason = row.CancelReason.Valid, row.CancelReason.Valid, row.CancelReason.String
	}
	return all, nil
}

// applyCapture decides the order's award once: a later capture of the
// same order finds it decided and does nothing. A payment worth no points
// is ignored. An order cancelled before its capture gets a dropped award
// and no timer. Otherwise the award is pending, its timer due awardDelay
// from now.
func (h *handler) applyCapture(ctx context.Context, o *order, r record) error {
	ev := r.capture
	if o.award != "" {
		return nil // already decided
	}
	pts := points(ev.AmountCents)
	if pts <= 0 {
		h.log.DebugContext(ctx, "payment worth no points", "order_id", ev.OrderID, "amount_cents", ev.AmountCents)
		return nil
	}
	o.customerID, o.points = ev.CustomerID, pts
	if o.cancelled {
		o.award, o.reason = stateDropped, o.cancelReason
		h.log.InfoContext(ctx, "order cancelled before its payment was captured: no points",
			"order_id", ev.OrderID, "reason", o.cancelReason)
		return nil
	}
	payload, err := json.Marshal(awardPayload{
		CustomerID:    ev.CustomerID,
		Points:        pts,
		CorrelationID: correlation.ID(ctx),
		Traceparent:   correlation.Traceparent(ctx),
	})
	if err != nil {
		return fmt.Errorf("encode award timer: %w", err)
	}
	o.award, o.dueAt, o.payload, o.scheduledBy = statePending, time.Now().Add(h.awardDelay), payload, r.index
	return nil
}

// applyCancel applies OrderCancelled and PaymentRefunded: the cancellation
// is remembered (for a capture still to come), and a pending award is
// dropped with its timer. An award that was already given stays: no
// clawback.
func (h *handler) applyCancel(ctx context.Context, o *order, reason string) {
	if !o.cancelled {
		o.cancelled, o.cancelReason = true, reason
	}
	switch o.award {
	case statePending:
		o.award, o.reason, o.cancelTimer = stateDropped, reason, true
		h.log.InfoContext(ctx, "pending award dropped", "order_id", o.key, "customer_id", o.customerID,
			"points", o.points, "reason", reason)
	case stateAwarded:
		h.log.InfoContext(ctx, "order cancelled after its points were awarded: points kept",
			"order_id", o.key, "customer_id", o.customerID, "points", o.points, "reason", reason)
	}
}

// write stores what the batch's n records changed of its orders, one
// statement per table.
func (h *handler) write(ctx context.Context, tx pgx.Tx, q *loyaltydb.Queries, orders []*order, n int) error {
	// The timers first: a timer that exists already, without its award row
	// (the row and its timer are written together, so the row was deleted
	// by hand), changes what its order's records do.
	var entries []timer.Entry
	var scheduling []*order
	for _, o := range orders {
		if !o.dueAt.IsZero() {
			entries = append(entries, timer.Entry{Kind: timerAward, Key: o.key, Due: o.dueAt, Payload: o.payload})
			scheduling = append(scheduling, o)
		}
	}
	scheduled, err := timer.ScheduleAll(ctx, tx, entries)
	if err != nil {
		return err
	}
	for j, ok := range scheduled {
		if ok {
			continue
		}
		o := scheduling[j]
		if n > 1 {
			// Alone, the capture is handled as below; the records before it
			// commit without it.
			return &consumer.RecordError{Index: o.scheduledBy,
				Err: fmt.Errorf("award timer of %s exists without its award row: %w", o.key, consumer.ErrBatchConflict)}
		}
		// Scheduling nothing is the side that cannot double an award.
		h.log.WarnContext(ctx, "award timer exists without its award row: nothing scheduled", "order_id", o.key)
		return nil // the capture was the only record
	}

	var awards loyaltydb.SaveAwardsParams
	var remember loyaltydb.RememberCancellationsParams
	var cancel []string
	for _, o := range orders {
		if o.award != o.storedAward {
			awards.OrderIds = append(awards.OrderIds, o.id)
			awards.CustomerIds = append(awards.CustomerIds, o.customerID)
			awards.Points = append(awards.Points, o.points)
			awards.States = append(awards.States, o.award)
			awards.DueAts = append(awards.DueAts, o.dueAt) // zero: NULL
			awards.Reasons = append(awards.Reasons, o.reason)
		}
		if o.cancelled && !o.storedCancel {
			remember.OrderIds = append(remember.OrderIds, o.id)
			remember.Reasons = append(remember.Reasons, o.cancelReason)
		}
		if o.cancelTimer {
			cancel = append(cancel, o.key)
		}
	}
	if len(awards.OrderIds) > 0 {
		if err := q.SaveAwards(ctx, awards); err != nil {
			return fmt.Errorf("save %d awards: %w", len(awards.OrderIds), err)
		}
	}
	if len(remember.OrderIds) > 0 {
		if err := q.RememberCancellations(ctx, remember); err != nil {
			return fmt.Errorf("remember %d cancellations: %w", len(remember.OrderIds), err)
		}
	}
	// The timers cannot be firing now: their worker would hold the orders'
	// locks, which this transaction holds. Were one gone, the award's
	// state, which the timer checks, keeps it from crediting anything.
	cancelled, err := timer.CancelAll(ctx, tx, timerAward, cancel)
	if err != nil {
		return err
	}
	for j, ok := range cancelled {
		if !ok {
			h.log.WarnContext(ctx, "pending award had no pending award timer", "order_id", cancel[j])
		}
	}
	return nil
}

// fireAwards is the award timers' BatchFireFunc: the pending awards of
// their orders become awarded in one statement, which adds their points to
// their customers' balances (the sum of each customer's awarded rows), and
// one PointsAwarded per award is written in one statement, in the timers'
// order, each with its capture's correlation id; all in the transaction
// that marks the timers fired. A timer whose award is not pending
// (dropped) gives nothing.
//
// Several awards of one customer in a batch need no summing: each award
// row is its own credit. It writes only the orders' own rows, never a row
// shared with other orders such as a per-customer balance: two instances'
// passes would serialize on their common customers' rows, and updating
// them in different orders deadlock (with a stored balance row, two
// instances and a handful of customers, nearly every concurrent pair of
// per-timer batches did).
func (h *handler) fireAwards(ctx context.Context, tx pgx.Tx, timers []timer.Timer) error {
	ids := make([]uuid.UUID, len(timers))
	for i, t := range timers {
		id, err := uuid.Parse(t.Key)
		if err != nil {
			return &timer.FireError{Index: i, Err: fmt.Errorf("award timer key %q: %w", t.Key, err)}
		}
		ids[i] = id
	}
	rows, err := loyaltydb.New(tx).MarkAwarded(ctx, ids)
	if err != nil {
		return fmt.Errorf("mark %d awards awarded: %w", len(ids), err)
	}
	given := make(map[uuid.UUID]loyaltydb.MarkAwardedRow, len(rows))
	for _, a := range rows {
		given[a.OrderID] = a
	}
	ctxs := make([]context.Context, len(timers))
	var ob outbox.Batch
	for i, t := range timers {
		var end func()
		ctxs[i], end = h.awardContext(ctx, t)
		defer end()
		a, ok := given[ids[i]]
		if !ok {
			h.log.InfoContext(ctxs[i], "award timer fired for an award that is not pending: nothing awarded", "order_id", t.Key)
			continue
		}
		out := &contract.PointsAwarded{
			Envelope:   contract.Envelope{Event: "PointsAwarded", OrderID: t.Key},
			CustomerID: a.CustomerID,
			Points:     a.Points,
		}
		if err := ob.Add(ctxs[i], out); err != nil {
			return &timer.FireError{Index: i, Err: fmt.Errorf("PointsAwarded: %w", err)}
		}
	}
	if err := h.outbox.WriteBatch(ctx, tx, &ob); err != nil {
		return fmt.Errorf("write %d PointsAwarded: %w", ob.Len(), err)
	}
	for i, t := range timers {
		if a, ok := given[ids[i]]; ok {
			h.log.DebugContext(ctxs[i], "points awarded", "order_id", t.Key, "customer_id", a.CustomerID, "points", a.Points)
		}
	}
	return nil
}

// awardContext is ctx with the correlation id and trace of the capture
// that scheduled t (timer.Context); end ends its span.
func (h *handler) awardContext(ctx context.Context, t timer.Timer) (_ context.Context, end func()) {
	var p awardPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		h.log.WarnContext(ctx, "award timer payload unreadable; awarding without its correlation id", "key", t.Key, "err", err)
	}
	return timer.Context(ctx, h.tracer, t, p.CorrelationID, p.Traceparent)
}
