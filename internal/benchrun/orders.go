package benchrun

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// The orders of a run are happy ones (paid, shipped, points awarded when
// the total is worth any, a confirmation and a shipping email sent). What
// the databases say of them is read here, one query per database, by the
// databases' clock, which is this machine's.

// captureLatencies is, for each order orders has recorded PaymentCaptured
// for, the time from the order's row (its transaction, just before the
// 201) to that record, sorted; the same figure as BenchmarkChoreography's.
func captureLatencies(ctx context.Context, ordersDB string, ids []string) ([]time.Duration, error) {
	c, err := pgx.Connect(ctx, ordersDB)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	rows, _ := c.Query(ctx, `
		SELECT extract(epoch FROM t.recorded_at - o.created_at)::float8
		FROM order_timeline t JOIN orders o ON o.id = t.order_id
		WHERE t.event = 'PaymentCaptured' AND t.order_id = ANY($1::text[]::uuid[])`, ids)
	var lat []time.Duration
	var s float64
	_, err = pgx.ForEachRow(rows, []any{&s}, func() error {
		lat = append(lat, time.Duration(s*float64(time.Second)))
		return nil
	})
	slices.Sort(lat)
	return lat, err
}

// completions maps each complete order to when it completed: the later
// of orders' last update (it records Shipped and PointsAwarded, so both
// happened by then) and its second email's sending. Incomplete orders are
// absent.
func completions(ctx context.Context, ordersDB, emailDB string, ids []string) (map[string]time.Time, error) {
	type order struct {
		done bool
		at   time.Time
	}
	orders := make(map[string]order, len(ids))
	err := query(ctx, ordersDB, `
		SELECT id::text, status = 'shipped' AND (points_awarded > 0 OR total_cents < 100), updated_at
		FROM orders WHERE id = ANY($1::text[]::uuid[])`, ids, func(scan func(...any) error) error {
		var (
			id string
			o  order
		)
		if err := scan(&id, &o.done, &o.at); err != nil {
			return err
		}
		orders[id] = o
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("orders database: %w", err)
	}
	done := map[string]time.Time{}
	err = query(ctx, emailDB, `
		SELECT order_id::text, count(*) FILTER (WHERE status = 'sent'), coalesce(max(sent_at), 'epoch')
		FROM emails WHERE order_id = ANY($1::text[]::uuid[]) GROUP BY order_id`, ids, func(scan func(...any) error) error {
		var (
			id   string
			sent int
			at   time.Time
		)
		if err := scan(&id, &sent, &at); err != nil {
			return err
		}
		if o := orders[id]; o.done && sent >= 2 {
			done[id] = later(o.at, at)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("email database: %w", err)
	}
	return done, nil
}

// query runs sql with ids on a connection of its own to url, calling row
// for each row.
func query(ctx context.Context, url, sql string, ids []string, row func(scan func(...any) error) error) error {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	rows, err := c.Query(ctx, sql, ids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
