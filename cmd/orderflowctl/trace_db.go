package main

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// facts is everything read about one order, before it is put in order.
type facts struct {
	orderID     string
	order       orderRow
	outbox      []outboxRow
	timeline    []timelineRow // orders' own record of the events it saw
	inbox       []inboxRow
	timers      []timerRow
	emails      []emailRow
	waiting     []waitingRow
	records     []kafkaRecord               // the order's records on the event topics
	dead        []kafkaRecord               // and on the dlq.* topics
	scans       []scan                      // the partitions read
	kafkaRead   bool                        // they were: a record not found is not there
	committed   map[string]map[string]int64 // service → topic → its group's committed offset on the key's partition
	payment     *stateRow
	shipment    *stateRow
	award       *stateRow
	unavailable []string
}

type orderRow struct {
	status, cancelReason, correlationID string
	totalCents, pointsAwarded           int64
	createdAt                           time.Time
}

type outboxRow struct {
	service, eventID, topic, eventType string
	createdAt                          time.Time
	published                          bool // the relay's cursor is past it
}

type timelineRow struct {
	event, eventID, service string
	recordedAt              time.Time
}

type inboxRow struct {
	service, eventID, topic string
	partition               int32
	offset                  int64
	at                      time.Time
}

type timerRow struct {
	service, kind, state, lastError string
	attempts                        int
	createdAt, dueAt                time.Time
	doneAt                          *time.Time
}

type emailRow struct {
	taskID, kind, status, lastError, to string
	attempts                            int
	createdAt, updatedAt                time.Time
	sentAt                              *time.Time
}

type waitingRow struct {
	kind      string
	createdAt time.Time
}

// stateRow is a service's own row for the order: its status and why.
type stateRow struct {
	status, detail string
	due            *time.Time // loyalty's award
}

// timerKinds are the durable timers each service keys by orderId
// (warehouse's timerShip, loyalty's timerAward): the timers table is
// indexed by (kind, key), so the kind is asked for too.
var timerKinds = map[string][]string{"warehouse": {"ship"}, "loyalty": {"award"}}

// readOrder reads the order's row and timeline; false when there is none.
func readOrder(ctx context.Context, pool *pgxpool.Pool, f *facts) (bool, error) {
	o := &f.order
	err := pool.QueryRow(ctx, `SELECT status, coalesce(cancel_reason, ''), correlation_id, total_cents, points_awarded, created_at
		FROM orders WHERE id = $1`, f.orderID).
		Scan(&o.status, &o.cancelReason, &o.correlationID, &o.totalCents, &o.pointsAwarded, &o.createdAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	rows, _ := pool.Query(ctx, `SELECT event, event_id::text, service, recorded_at
		FROM order_timeline WHERE order_id = $1 ORDER BY occurred_at, id`, f.orderID)
	f.timeline, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (timelineRow, error) {
		var t timelineRow
		return t, r.Scan(&t.event, &t.eventID, &t.service, &t.recordedAt)
	})
	return true, err
}

// readService reads the order's rows in one service's database: its
// outbox rows (by key, from since: the table has no index on key, and
// nothing of the order was written before it), timers, and the service's
// own tables.
func readService(ctx context.Context, pool *pgxpool.Pool, name string, f *facts, since time.Time) error {
	rows, _ := pool.Query(ctx, `SELECT o.event_id::text, o.topic, o.event_type, o.created_at, (o.txid, o.id) <= (c.txid, c.id)
		FROM outbox o, outbox_cursor c WHERE o.key = $1 AND o.created_at >= $2 ORDER BY o.id`, f.orderID, since)
	ob, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outboxRow, error) {
		o := outboxRow{service: name}
		return o, r.Scan(&o.eventID, &o.topic, &o.eventType, &o.createdAt, &o.published)
	})
	if err != nil {
		return err
	}
	f.outbox = append(f.outbox, ob...)
	if kinds := timerKinds[name]; len(kinds) > 0 {
		rows, _ := pool.Query(ctx, `SELECT kind, state, last_error, attempts, created_at, due_at, done_at
			FROM timers WHERE kind = ANY($1) AND key = $2`, kinds, f.orderID)
		ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (timerRow, error) {
			t := timerRow{service: name}
			return t, r.Scan(&t.kind, &t.state, &t.lastError, &t.attempts, &t.createdAt, &t.dueAt, &t.doneAt)
		})
		if err != nil {
			return err
		}
		f.timers = append(f.timers, ts...)
	}
	return readOwn(ctx, pool, name, f)
}

// readOwn reads the service's own row for the order, which outlives the
// outbox and inbox rows pruned after their retention.
func readOwn(ctx context.Context, pool *pgxpool.Pool, name string, f *facts) error {
	var err error
	switch name {
	case "payments":
		f.payment, err = readState(ctx, pool, `SELECT status, concat_ws(', ', nullif(reason, ''), CASE WHEN attempts > 1 THEN 'attempt ' || attempts END),
			NULL::timestamptz FROM payments WHERE order_id = $1`, f.orderID)
	case "warehouse":
		f.shipment, err = readState(ctx, pool, `SELECT status, coalesce(tracking_id, cancel_reason), NULL::timestamptz FROM shipments WHERE order_id = $1`, f.orderID)
	case "loyalty":
		f.award, err = readState(ctx, pool, `SELECT state, points || ' points' || CASE WHEN reason = '' THEN '' ELSE ', ' || reason END, due_at
			FROM awards WHERE order_id = $1`, f.orderID)
	case "email":
		err = readEmails(ctx, pool, f)
	}
	return err
}

func readState(ctx context.Context, pool *pgxpool.Pool, query, orderID string) (*stateRow, error) {
	var s stateRow
	err := pool.QueryRow(ctx, query, orderID).Scan(&s.status, &s.detail, &s.due)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// readEmails reads the order's email tasks and the emails waiting for its
// recipient.
func readEmails(ctx context.Context, pool *pgxpool.Pool, f *facts) error {
	rows, _ := pool.Query(ctx, `SELECT task_id::text, kind, status, last_error, to_addr, attempts, created_at, updated_at, sent_at
		FROM emails WHERE order_id = $1 ORDER BY created_at`, f.orderID)
	var err error
	f.emails, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (emailRow, error) {
		var e emailRow
		return e, r.Scan(&e.taskID, &e.kind, &e.status, &e.lastError, &e.to, &e.attempts, &e.createdAt, &e.updatedAt, &e.sentAt)
	})
	if err != nil {
		return err
	}
	rows, _ = pool.Query(ctx, `SELECT kind, created_at FROM waiting_emails WHERE order_id = $1`, f.orderID)
	f.waiting, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (waitingRow, error) {
		var w waitingRow
		return w, r.Scan(&w.kind, &w.createdAt)
	})
	return err
}

// readInbox reads which of the events ids the service's consumer handled,
// when, and from which record.
func readInbox(ctx context.Context, pool *pgxpool.Pool, name string, ids []string, f *facts) error {
	rows, _ := pool.Query(ctx, `SELECT event_id::text, topic, partition, "offset", processed_at
		FROM processed_events WHERE event_id = ANY($1::uuid[])`, ids)
	in, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (inboxRow, error) {
		i := inboxRow{service: name}
		return i, r.Scan(&i.eventID, &i.topic, &i.partition, &i.offset, &i.at)
	})
	f.inbox = append(f.inbox, in...)
	return err
}

// forget drops the outbox rows and timers read from the service's
// database, before they are read again.
func (f *facts) forget(service string) {
	f.outbox = slices.DeleteFunc(f.outbox, func(o outboxRow) bool { return o.service == service })
	f.timers = slices.DeleteFunc(f.timers, func(t timerRow) bool { return t.service == service })
}

// eventIDs are the ids of every event of the order found so far.
func (f *facts) eventIDs() []string {
	seen := map[string]bool{}
	var ids []string
	add := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, o := range f.outbox {
		add(o.eventID)
	}
	for _, t := range f.timeline {
		add(t.eventID)
	}
	for _, r := range f.records {
		add(r.eventID)
	}
	for _, r := range f.dead {
		add(r.eventID)
	}
	return ids
}
