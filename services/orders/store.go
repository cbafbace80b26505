package orders

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/services/orders/internal/ordersdb"
)

// Store is the orders database: the service's tables and its outbox.
type Store struct {
	pool   *pgxpool.Pool
	outbox *outbox.Outbox
	placer *placer // keyless orders, written together (placer.go)
}

// NewStore returns the store on pool; events go to ob.
func NewStore(pool *pgxpool.Pool, ob *outbox.Outbox) *Store {
	s := &Store{pool: pool, outbox: ob}
	s.placer = newPlacer(s, placerSlots)
	return s
}

// InTx runs fn in one transaction and commits when it returns nil. Events
// fn writes to the outbox with tx are committed with its changes, and the
// relay is woken after the commit.
func (s *Store) InTx(ctx context.Context, fn func(q *ordersdb.Queries, tx pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return fn(ordersdb.New(tx), tx)
	})
	if err != nil {
		return err
	}
	s.outbox.Committed()
	return nil
}

// Order is an order as the API shows it.
type Order struct {
	ID            uuid.UUID
	Status        string
	CustomerID    string
	Email         string
	Items         []orderItem
	TotalCents    int64
	Currency      string
	CancelReason  string // "" unless cancelled
	PointsAwarded int64
	CreatedAt     time.Time
	UpdatedAt     time.Time
	Timeline      []TimelineEntry // only filled by Store.Order
}

// TimelineEntry is one event about an order that orders has seen.
type TimelineEntry struct {
	Event      string
	EventID    uuid.UUID
	Service    string
	OccurredAt time.Time
	RecordedAt time.Time // when orders recorded it
}

// createOrder places the order req describes: in one transaction it inserts
// the order, its first timeline entry and the OrderPlaced event. With an
// idempotency key, a request the key has already placed returns that order
// with created false, and a different request under the same key fails with
// ErrIdempotencyConflict; requests racing on one key place one order.
func (s *Store) createOrder(ctx context.Context, req orderRequest, idempotencyKey string) (o Order, created bool, err error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Order{}, false, fmt.Errorf("new order id: %w", err)
	}
	items, err := json.Marshal(req.Items)
	if err != nil {
		return Order{}, false, fmt.Errorf("encode items: %w", err)
	}
	if idempotencyKey == "" {
		o, err := s.placeOrder(ctx, req, id, items)
		return o, err == nil, err
	}
	err = s.InTx(ctx, func(q *ordersdb.Queries, tx pgx.Tx) error {
		hash := req.hash()
		// The key goes first: a concurrent request holding it makes
		// this wait for its commit, then find the committed row.
		_, err := q.ClaimIdempotencyKey(ctx, ordersdb.ClaimIdempotencyKeyParams{
			Key: idempotencyKey, RequestHash: hash, OrderID: id,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			prev, err := q.GetIdempotencyKey(ctx, idempotencyKey)
			if err != nil {
				return fmt.Errorf("get idempotency key: %w", err)
			}
			if !bytes.Equal(prev.RequestHash, hash) {
				return ErrIdempotencyConflict
			}
			row, err := q.GetOrder(ctx, prev.OrderID)
			if err != nil {
				return fmt.Errorf("get order %s: %w", prev.OrderID, err)
			}
			o, err = orderFromRow(row)
			return err
		}
		if err != nil {
			return fmt.Errorf("claim idempotency key: %w", err)
		}

		row, err := q.InsertOrder(ctx, ordersdb.InsertOrderParams{
			ID:            id,
			CustomerID:    req.CustomerID,
			Email:         req.Email,
			Items:         items,
			TotalCents:    req.totalCents(),
			Currency:      req.Currency,
			PaymentToken:  req.PaymentToken,
			CorrelationID: correlation.ID(ctx),
		})
		if err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		if o, err = orderFromRow(row); err != nil {
			return err
		}

		ev := orderPlaced(o, req.PaymentToken)
		if _, err := q.InsertTimelineEvent(ctx, ordersdb.InsertTimelineEventParams{
			OrderID:    id,
			Event:      ev.Name(),
			EventID:    uuid.MustParse(ev.EventID),
			Service:    serviceName,
			OccurredAt: ev.OccurredAt,
		}); err != nil {
			return fmt.Errorf("insert timeline: %w", err)
		}
		if err := s.outbox.Write(ctx, tx, ev); err != nil {
			return fmt.Errorf("write OrderPlaced: %w", err)
		}
		created = true
		return nil
	})
	if err != nil {
		return Order{}, false, err
	}
	return o, created, nil
}

// placeOrder writes a new order, its timeline entry and its OrderPlaced
// event, all or nothing, with the other keyless orders of the moment
// (placer.go). A new order needs no lock: no other transaction can know
// its id before it commits.
func (s *Store) placeOrder(ctx context.Context, req orderRequest, id uuid.UUID, items []byte) (Order, error) {
	// PostgreSQL keeps microseconds: the row and the event say the same time.
	now := time.Now().UTC().Truncate(time.Microsecond)
	o := Order{
		ID: id, Status: statusPlaced, CustomerID: req.CustomerID, Email: req.Email, Items: req.Items,
		TotalCents: req.totalCents(), Currency: req.Currency, CreatedAt: now, UpdatedAt: now,
	}
	ev := orderPlaced(o, req.PaymentToken)
	p := &placing{
		ctx: ctx, order: o, items: string(items), token: req.PaymentToken, corrID: correlation.ID(ctx),
		eventID: uuid.MustParse(ev.EventID), event: ev.Name(), occurred: ev.OccurredAt,
	}
	if err := p.events.Add(ctx, ev); err != nil {
		return Order{}, fmt.Errorf("write OrderPlaced: %w", err)
	}
	if err := s.placer.place(p); err != nil {
		return Order{}, err
	}
	return o, nil
}

// named makes a queued statement's failure say what failed.
func named(q *pgx.QueuedQuery, what string) {
	q.Fn = func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
}

// orderPlaced is the event announcing o. Its id and time are set here, not
// by the outbox, so the timeline entry shows the same ones.
func orderPlaced(o Order, paymentToken string) *contract.OrderPlaced {
	items := make([]contract.Item, len(o.Items))
	for i, it := range o.Items {
		items[i] = contract.Item{SKU: it.SKU, Quantity: int(it.Quantity), UnitPriceCents: it.UnitPriceCents}
	}
	return &contract.OrderPlaced{
		Envelope: contract.Envelope{
			Event:      "OrderPlaced",
			Version:    1,
			EventID:    uuid.Must(uuid.NewV7()).String(),
			OrderID:    o.ID.String(),
			OccurredAt: o.CreatedAt,
		},
		CustomerID:   o.CustomerID,
		Email:        o.Email,
		Items:        items,
		TotalCents:   o.TotalCents,
		Currency:     o.Currency,
		PaymentToken: paymentToken,
	}
}

// Order returns the order with its timeline, oldest event first, or
// ErrNotFound.
func (s *Store) Order(ctx context.Context, id uuid.UUID) (Order, error) {
	var o Order
	// One snapshot for the row and its timeline: read apart, a consumer
	// commit in between would show a timeline the row does not reflect.
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		q := ordersdb.New(tx)
		row, err := q.GetOrder(ctx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("get order %s: %w", id, err)
		}
		if o, err = orderFromRow(row); err != nil {
			return err
		}
		o.Timeline, err = timeline(ctx, q, id)
		return err
	})
	if err != nil {
		return Order{}, err
	}
	return o, nil
}

// timeline lists the order's timeline, oldest event first.
func timeline(ctx context.Context, q *ordersdb.Queries, id uuid.UUID) ([]TimelineEntry, error) {
	rows, err := q.ListTimeline(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("list timeline of %s: %w", id, err)
	}
	entries := make([]TimelineEntry, len(rows))
	for i, t := range rows {
		entries[i] = TimelineEntry{Event: t.Event, EventID: t.EventID, Service: t.Service, OccurredAt: t.OccurredAt.UTC(), RecordedAt: t.RecordedAt.UTC()}
	}
	return entries, nil
}

// cancelOrder cancels the order for reason: in one transaction it moves the
// status to cancelled, writes the OrderCancelled event and its timeline
// entry, and returns the order with its timeline. An order cancelled
// already is returned as it is and nothing is written, so a retried cancel
// is answered like the first. Otherwise ErrNotFound, ErrShipped or
// ErrPaymentFailed, and nothing is written either.
func (s *Store) cancelOrder(ctx context.Context, id uuid.UUID, reason string) (Order, error) {
	var o Order
	err := s.InTx(ctx, func(q *ordersdb.Queries, tx pgx.Tx) error {
		// The order's lock before anything else, as the consumer takes it:
		// a handler's OrderCancelled (StockUnavailable) and this one
		// serialize, so only one of them finds the order cancellable, and
		// the outbox keeps this order's events in commit order.
		if err := outbox.LockKey(ctx, tx, id.String()); err != nil {
			return err
		}
		row, err := q.CancelOrder(ctx, ordersdb.CancelOrderParams{ID: id, CancelReason: reason})
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// Not cancellable: say why.
			row, err = q.GetOrder(ctx, id)
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			}
			if err != nil {
				return fmt.Errorf("get order %s: %w", id, err)
			}
			switch row.Status {
			case statusCancelled: // already: answered as it is
			case statusShipped:
				return ErrShipped
			case statusPaymentFailed:
				return ErrPaymentFailed
			default:
				return fmt.Errorf("order %s is %s but could not be cancelled", id, row.Status)
			}
		case err != nil:
			return fmt.Errorf("cancel order %s: %w", id, err)
		default:
			if err := announceCancelled(ctx, tx, s.outbox, id, reason); err != nil {
				return err
			}
		}
		if o, err = orderFromRow(row); err != nil {
			return err
		}
		o.Timeline, err = timeline(ctx, q, id)
		return err
	})
	if err != nil {
		return Order{}, err
	}
	return o, nil
}

// announceCancelled writes, in tx, the OrderCancelled event of an order
// the transaction has just cancelled for reason, and its timeline entry.
// The caller holds the order's lock (outbox.LockKey). The event's id and
// time are set here, the time to the microsecond PostgreSQL keeps, so the
// timeline shows the same ones as the event.
func announceCancelled(ctx context.Context, tx pgx.Tx, ob *outbox.Outbox, orderID uuid.UUID, reason string) error {
	ev := cancelledEvent(orderID, reason)
	if _, err := ordersdb.New(tx).InsertTimelineEvent(ctx, ordersdb.InsertTimelineEventParams{
		OrderID:    orderID,
		Event:      ev.Name(),
		EventID:    uuid.MustParse(ev.EventID),
		Service:    serviceName,
		OccurredAt: ev.OccurredAt,
	}); err != nil {
		return fmt.Errorf("insert timeline: %w", err)
	}
	if err := ob.Write(ctx, tx, ev); err != nil {
		return fmt.Errorf("write OrderCancelled: %w", err)
	}
	return nil
}

// cancelledEvent is the OrderCancelled of orderID for reason, with its
// eventId and occurredAt set so the timeline can record it.
func cancelledEvent(orderID uuid.UUID, reason string) *contract.OrderCancelled {
	return &contract.OrderCancelled{
		Envelope: contract.Envelope{
			Event:      "OrderCancelled",
			Version:    1,
			EventID:    uuid.Must(uuid.NewV7()).String(),
			OrderID:    orderID.String(),
			OccurredAt: time.Now().UTC().Truncate(time.Microsecond),
		},
		Reason: reason,
	}
}

func orderFromRow(row ordersdb.Order) (Order, error) {
	o := Order{
		ID:            row.ID,
		Status:        row.Status,
		CustomerID:    row.CustomerID,
		Email:         row.Email,
		TotalCents:    row.TotalCents,
		Currency:      row.Currency,
		CancelReason:  row.CancelReason.String,
		PointsAwarded: row.PointsAwarded,
		CreatedAt:     row.CreatedAt.UTC(),
		UpdatedAt:     row.UpdatedAt.UTC(),
	}
	if err := json.Unmarshal(row.Items, &o.Items); err != nil {
		return Order{}, fmt.Errorf("decode items of order %s: %w", row.ID, err)
	}
	return o, nil
}
