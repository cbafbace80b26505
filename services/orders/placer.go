package orders

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/services/orders/internal/ordersdb"
)

// placer writes the keyless POST /orders requests that arrive together in
// one round trip: group commit. Written one by one, each order cost
// PostgreSQL a transaction, three statements and a WAL flush, and held a
// pool connection for a round trip that, on a busy machine, mostly waits
// to be scheduled: the pool, not the work, capped the orders accepted a
// second. Together, the orders of a moment are three multi-row
// statements and one commit.
//
// Nothing waits for a batch to fill: a request finding a writer slot free
// writes what is queued at that moment, itself included, so an order
// alone is written at once; requests arriving meanwhile queue for the
// next slot. The caller's goroutine does the writing, so no goroutine
// outlives the requests. A batch that fails is written again order by
// order, so one order's failure is its own: an outage fails each, a bad
// row fails only that request.
type placer struct {
	store *Store
	slots chan struct{} // one per batch that may be written at once
	limit int           // orders in one batch, at most

	mu     sync.Mutex
	queued []*placing
}

// placing is one order waiting to be written.
type placing struct {
	ctx      context.Context
	order    Order
	items    string // JSON
	token    string
	corrID   string
	eventID  uuid.UUID
	event    string
	occurred time.Time
	events   outbox.Batch // its OrderPlaced

	taken bool          // by a batch; under placer.mu
	done  chan struct{} // closed when err is set
	err   error
}

// Limits of the placer: at most placerSlots batches at once (each holds a
// pool connection; the pool's others serve reads, cancels and keyed
// orders) of at most placerLimit orders.
const (
	placerSlots = 2
	placerLimit = 256
)

func newPlacer(s *Store, slots int) *placer {
	return &placer{store: s, slots: make(chan struct{}, slots), limit: placerLimit}
}

// place writes p, with whatever else is queued, and returns its outcome.
// Once taken into a batch it waits for that batch however ctx ends, so the
// answer never contradicts what was committed.
func (pl *placer) place(p *placing) error {
	p.done = make(chan struct{})
	pl.mu.Lock()
	pl.queued = append(pl.queued, p)
	pl.mu.Unlock()
	for {
		select {
		case <-p.done:
			return p.err
		case pl.slots <- struct{}{}:
			pl.writeQueued()
			<-pl.slots
		case <-p.ctx.Done():
			pl.mu.Lock()
			if !p.taken {
				pl.queued = slices.DeleteFunc(pl.queued, func(q *placing) bool { return q == p })
				pl.mu.Unlock()
				return p.ctx.Err()
			}
			pl.mu.Unlock()
			<-p.done
			return p.err
		}
	}
}

// writeQueued writes the queued orders, oldest first, at most limit.
func (pl *placer) writeQueued() {
	pl.mu.Lock()
	n := min(len(pl.queued), pl.limit)
	batch := slices.Clone(pl.queued[:n])
	pl.queued = slices.Delete(pl.queued, 0, n)
	for _, p := range batch {
		p.taken = true
	}
	pl.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if len(batch) == 1 {
		batch[0].err = pl.store.writePlacing(batch[0].ctx, batch[0])
	} else if err := pl.store.writePlacings(batch); err != nil {
		for _, p := range batch {
			p.err = pl.store.writePlacing(p.ctx, p)
		}
	}
	for _, p := range batch {
		close(p.done)
	}
}

// writePlacing writes one order, its timeline entry and its OrderPlaced
// event as one pgx.Batch outside an explicit transaction: PostgreSQL runs
// the batch as one implicit transaction, all three rows or none, in one
// round trip instead of five (BEGIN, three statements, COMMIT).
func (s *Store) writePlacing(ctx context.Context, p *placing) error {
	o := p.order
	var pb pgx.Batch
	named(pb.Queue(ordersdb.InsertPlacedOrder, o.ID, o.CustomerID, o.Email, []byte(p.items), o.TotalCents, o.Currency,
		p.token, p.corrID, o.CreatedAt), "insert order")
	named(pb.Queue(ordersdb.InsertTimelineEvent, o.ID, p.event, p.eventID, serviceName, p.occurred), "insert timeline")
	s.outbox.Queue(&pb, &p.events)
	if err := s.pool.SendBatch(ctx, &pb).Close(); err != nil {
		return err
	}
	s.outbox.Committed()
	return nil
}

// writePlacings writes many orders the same way, a statement per table.
// It runs on behalf of every request in it, so no request's context
// cancels it (the first one's values, such as its trace, go with it);
// batchTimeout bounds it instead.
func (s *Store) writePlacings(batch []*placing) error {
	n := len(batch)
	orders := ordersdb.InsertPlacedOrdersParams{
		Ids: make([]uuid.UUID, n), CustomerIds: make([]string, n), Emails: make([]string, n),
		Items: make([]string, n), TotalCents: make([]int64, n), Currencies: make([]string, n),
		PaymentTokens: make([]string, n), CorrelationIds: make([]string, n), CreatedAts: make([]time.Time, n),
	}
	var timeline ordersdb.InsertTimelineEventsParams
	var events outbox.Batch
	for i, p := range batch {
		o := p.order
		orders.Ids[i], orders.CustomerIds[i], orders.Emails[i], orders.Items[i] = o.ID, o.CustomerID, o.Email, p.items
		orders.TotalCents[i], orders.Currencies[i], orders.PaymentTokens[i] = o.TotalCents, o.Currency, p.token
		orders.CorrelationIds[i], orders.CreatedAts[i] = p.corrID, o.CreatedAt
		addTimeline(&timeline, o.ID, p.event, p.eventID, serviceName, p.occurred)
		events.Append(&p.events)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), batchTimeout)
	defer cancel()
	var pb pgx.Batch
	named(pb.Queue(ordersdb.InsertPlacedOrders, orders.Ids, orders.CustomerIds, orders.Emails, orders.Items,
		orders.TotalCents, orders.Currencies, orders.PaymentTokens, orders.CorrelationIds, orders.CreatedAts), "insert orders")
	t := timeline
	named(pb.Queue(ordersdb.InsertTimelineEvents, t.OrderIds, t.Events, t.EventIds, t.Services, t.OccurredAts), "insert timeline")
	s.outbox.Queue(&pb, &events)
	if err := s.pool.SendBatch(ctx, &pb).Close(); err != nil {
		return err
	}
	s.outbox.Committed()
	return nil
}

// batchTimeout bounds a batch of orders, which no request's context
// cancels.
const batchTimeout = 10 * time.Second
