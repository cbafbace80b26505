package warehouse

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/timer"
)

// BenchmarkHandle measures the handler alone on batches of 100 records,
// as the consumer runs them: one transaction with the orders' locks, the
// handler, the commit (no Kafka, no inbox). Each order has two of 50 SKUs,
// all in stock. "captured" reserves and schedules 100 new orders,
// "cancelled" cancels 100 scheduled picks.
func BenchmarkHandle(b *testing.B) {
	const batch = 100
	d := newDirect(b, time.Hour)
	for _, name := range []string{"captured", "cancelled"} {
		b.Run(name, func(b *testing.B) {
			var elapsed time.Duration
			for range b.N {
				msgs := make([]consumer.Message, batch)
				for i := range msgs {
					id := newID()
					msgs[i] = d.message(b, captured(id, item(fmt.Sprintf("BENCH-%02d", i%50), 1), item(fmt.Sprintf("BENCH-%02d", (i+7)%50), 2)))
				}
				if name == "cancelled" {
					d.apply(b, msgs)
					for i, m := range msgs {
						msgs[i] = d.message(b, cancelled(m.Envelope.OrderID))
					}
				}
				start := time.Now()
				d.apply(b, msgs)
				elapsed += time.Since(start)
			}
			b.ReportMetric(float64(b.N*batch)/elapsed.Seconds(), "events/s")
		})
	}
}

// BenchmarkShip measures the ship timer's worker: 1000 scheduled picks'
// timers made due at once, then fired by a timer.Worker in its batches of
// 100, until none is pending.
func BenchmarkShip(b *testing.B) {
	const picks = 1000
	d := newDirect(b, time.Hour)
	ctx := context.Background()
	var elapsed time.Duration
	for range b.N {
		for range picks / 100 {
			msgs := make([]consumer.Message, 100)
			for i := range msgs {
				msgs[i] = d.message(b, captured(newID(), item(fmt.Sprintf("SHIP-%02d", i%50), 1)))
			}
			d.apply(b, msgs)
		}
		if _, err := d.pool.Exec(ctx, "UPDATE timers SET due_at = now() WHERE state = 'pending'"); err != nil {
			b.Fatal(err)
		}
		w, err := timer.New(timer.Config{Service: serviceName, Pool: d.pool, MaxPoll: 10 * time.Millisecond,
			FireBatch: map[string]timer.BatchFireFunc{timerShip: d.h.ship}}, d.h.log)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		wctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		for {
			var pending int
			if err := d.pool.QueryRow(ctx, "SELECT count(*) FROM timers WHERE state = 'pending'").Scan(&pending); err != nil {
				b.Fatal(err)
			}
			if pending == 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		elapsed += time.Since(start)
		stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*picks)/elapsed.Seconds(), "fires/s")
}

// direct is the warehouse handler on a migrated database of its own,
// driven without Kafka: apply runs a batch of messages as the consumer
// runner would.
type direct struct {
	pool   *pgxpool.Pool
	h      *handler
	offset int64
}

func newDirect(tb testing.TB, shipDelay time.Duration) *direct {
	tb.Helper()
	ctx := context.Background()
	pool := pgtest.NewPool(tb)
	if err := Migrate(ctx, pool); err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ob := outbox.New(pool, outbox.Config{Service: serviceName}, log)
	return &direct{pool: pool, h: &handler{outbox: ob, defaultStock: 1_000_000_000, shipDelay: shipDelay, log: log}}
}

// message is ev as the runner hands it to the handler, at the next offset.
func (d *direct) message(tb testing.TB, ev contract.Event) consumer.Message {
	tb.Helper()
	m := ev.Meta()
	m.Event, m.Version, m.EventID, m.OccurredAt = ev.Name(), 1, newID(), time.Now().UTC()
	value, err := json.Marshal(ev)
	if err != nil {
		tb.Fatal(err)
	}
	d.offset++
	return consumer.Message{
		Topic: "payments", Offset: d.offset, Key: m.OrderID, Value: value,
		Envelope: *m, CorrelationID: "test-" + m.OrderID,
	}
}

// apply handles msgs in one transaction, after locking their orders.
func (d *direct) apply(tb testing.TB, msgs []consumer.Message) {
	tb.Helper()
	if err := d.try(msgs); err != nil {
		tb.Fatal(err)
	}
}

func (d *direct) try(msgs []consumer.Message) error {
	ctx := context.Background()
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	keys := make([]string, len(msgs))
	for i, m := range msgs {
		keys[i] = m.Envelope.OrderID
	}
	if err := outbox.LockKeys(ctx, tx, keys); err != nil {
		return err
	}
	if err := d.h.handle(ctx, tx, msgs); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
