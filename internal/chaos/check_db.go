package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/orderflow/orderflow/pkg/events/outbox"
)

// dbTimeout bounds one call's database work, connections included.
const dbTimeout = 20 * time.Second

// dbView is what the databases (and the SMTP server) say of the accepted
// orders, read in one query per table.
type dbView struct {
	orders    map[string]orderRow
	payments  map[string]paymentRow
	shipments map[string]string // order → shipment status
	awards    map[string]awardRow
	emails    map[string][]emailRow // order → its email tasks
	outbox    map[string]int64      // service → unpublished outbox rows
	// smtp counts the messages the SMTP server accepted per task id (the
	// Message-ID's local part); nil when the topology has no server.
	smtp map[string]int
}

type orderRow struct {
	status, cancelReason string
	points, totalCents   int64
}

type paymentRow struct{ status, reason string }

type awardRow struct {
	state       string
	points      int64
	awardedAt   pgtype.Timestamptz
	cancelledAt pgtype.Timestamptz // when loyalty recorded the order's cancellation or refund
}

type emailRow struct{ taskID, kind, status, lastError string }

// readOrder is the services whose databases the checker reads, in the
// order it reads them: a service's state is read before the state of those it learns from
// (orders learns from all, email from orders, payments and warehouse;
// warehouse from payments), so whatever a later-read database caused in an
// earlier-read one is already visible in the later one. A shipping email
// therefore never shows without its shipped shipment merely because the
// shipment committed between two reads. The SMTP server's messages are
// read right after the email tasks, for the same reason.
var readOrder = []string{"orders", "email", "loyalty", "warehouse", "payments"}

// readDatabases reads every service's tables for the orders ids, and each
// outbox's backlog. Connections are opened side by side, the queries run
// one after another in readOrder. Each source that fails gives an error.
func readDatabases(ctx context.Context, top Topology, ids []string) (*dbView, []error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	conns := map[string]*pgx.Conn{}
	failed := map[string]error{}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, svc := range readOrder {
		url, ok := top.Databases[svc]
		if !ok {
			mu.Lock()
			failed[svc] = errors.New("not in the topology")
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			c, err := pgx.Connect(ctx, url)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[svc] = err
				return
			}
			conns[svc] = c
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			_ = c.Close(context.WithoutCancel(ctx))
		}
	}()
	var errs []error
	for _, svc := range readOrder {
		if err := failed[svc]; err != nil {
			errs = append(errs, fmt.Errorf("%s database: %w", svc, err))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}

	v := &dbView{outbox: map[string]int64{}}
	read := func(svc string, f func(context.Context, *pgx.Conn, []string) error) {
		if err := f(ctx, conns[svc], ids); err != nil {
			errs = append(errs, fmt.Errorf("%s database: %w", svc, err))
		}
	}
	read("orders", v.readOrders)
	read("email", v.readEmails)
	v.readSMTP(top)
	read("loyalty", v.readAwards)
	read("warehouse", v.readShipments)
	read("payments", v.readPayments)
	for _, svc := range readOrder {
		n, _, err := outbox.Pending(ctx, conns[svc])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s database: %w", svc, err))
			continue
		}
		v.outbox[svc] = n
	}
	return v, errs
}

// Each read is one query of one table (loyalty's joins the cancellations
// it needs), filtered to the accepted orders.

// eachRow runs query with the order ids, scanning each row into dest and
// calling row after it.
func eachRow(ctx context.Context, c *pgx.Conn, query string, ids []string, dest []any, row func()) error {
	rows, _ := c.Query(ctx, query, ids) // the error comes with ForEachRow
	_, err := pgx.ForEachRow(rows, dest, func() error {
		row()
		return nil
	})
	return err
}

func (v *dbView) readOrders(ctx context.Context, c *pgx.Conn, ids []string) error {
	v.orders = make(map[string]orderRow, len(ids))
	var (
		id string
		o  orderRow
	)
	return eachRow(ctx, c, `SELECT id::text, status, coalesce(cancel_reason, ''), points_awarded, total_cents
		FROM orders WHERE id = ANY($1::text[]::uuid[])`, ids,
		[]any{&id, &o.status, &o.cancelReason, &o.points, &o.totalCents}, func() { v.orders[id] = o })
}

func (v *dbView) readEmails(ctx context.Context, c *pgx.Conn, ids []string) error {
	v.emails = make(map[string][]emailRow, len(ids))
	var (
		id string
		e  emailRow
	)
	return eachRow(ctx, c, `SELECT order_id::text, task_id::text, kind, status, last_error
		FROM emails WHERE order_id = ANY($1::text[]::uuid[]) ORDER BY created_at, task_id`, ids,
		[]any{&id, &e.taskID, &e.kind, &e.status, &e.lastError}, func() { v.emails[id] = append(v.emails[id], e) })
}

// readSMTP counts the accepted messages per task id. It comes after the
// email tasks: a task recorded sent was accepted before, so it is counted.
func (v *dbView) readSMTP(top Topology) {
	if top.SMTP == nil {
		return
	}
	v.smtp = map[string]int{}
	for _, m := range top.SMTP.Messages() {
		if id, ok := taskOfMessageID(m.Header); ok {
			v.smtp[id]++
		}
	}
}

// taskOfMessageID is the task id of a Message-ID <taskId@orderflow.local>.
func taskOfMessageID(h mail.Header) (string, bool) {
	id := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(h.Get("Message-ID")), "<"), ">")
	task, _, ok := strings.Cut(id, "@")
	return strings.ToLower(task), ok && task != ""
}

func (v *dbView) readAwards(ctx context.Context, c *pgx.Conn, ids []string) error {
	v.awards = make(map[string]awardRow, len(ids))
	var (
		id string
		a  awardRow
	)
	return eachRow(ctx, c, `SELECT a.order_id::text, a.state, a.points, a.awarded_at, c.created_at
		FROM awards a LEFT JOIN cancellations c USING (order_id)
		WHERE a.order_id = ANY($1::text[]::uuid[])`, ids,
		[]any{&id, &a.state, &a.points, &a.awardedAt, &a.cancelledAt}, func() { v.awards[id] = a })
}

func (v *dbView) readShipments(ctx context.Context, c *pgx.Conn, ids []string) error {
	v.shipments = make(map[string]string, len(ids))
	var id, status string
	return eachRow(ctx, c, `SELECT order_id::text, status FROM shipments WHERE order_id = ANY($1::text[]::uuid[])`, ids,
		[]any{&id, &status}, func() { v.shipments[id] = status })
}

func (v *dbView) readPayments(ctx context.Context, c *pgx.Conn, ids []string) error {
	v.payments = make(map[string]paymentRow, len(ids))
	var (
		id string
		p  paymentRow
	)
	return eachRow(ctx, c, `SELECT order_id::text, status, reason FROM payments WHERE order_id = ANY($1::text[]::uuid[])`, ids,
		[]any{&id, &p.status, &p.reason}, func() { v.payments[id] = p })
}
