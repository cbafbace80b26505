package warehouse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/timer"
)

// BenchmarkHandle measures the handler alone on batches of 100 records,
// as the consumer runs them: one transaction with the orders' locks, the
// handler, the commit (no Kafka, no inbox). Each order has two of 50 SKUs,
// all in stock. "captured" reserves and schedules 100 new orders,
// "cancelled" cancels 100 scheduled picks.
func BenchmarkHandle(b *testing.B) {
	const batch = 100
	d := newDirect(b, 1_000_000_000)
	for _, name := range []string{"captured", "cancelled"} {
		b.Run(name, func(b *testing.B) {
			var elapsed time.Duration
			for range b.N {
				msgs := make([]consumer.Message, batch)
				for i := range msgs {
					id := newID()
					msgs[i] = newMessage(b, captured(id, item(fmt.Sprintf("BENCH-%02d", i%50), 1), item(fmt.Sprintf("BENCH-%02d", (i+7)%50), 2)))
				}
				if name == "cancelled" {
					d.apply(b, msgs)
					for i, m := range msgs {
						msgs[i] = newMessage(b, cancelled(m.Envelope.OrderID))
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
	d := newDirect(b, 1_000_000_000)
	ctx := context.Background()
	var elapsed time.Duration
	for range b.N {
		for range picks / 100 {
			msgs := make([]consumer.Message, 100)
			for i := range msgs {
				msgs[i] = newMessage(b, captured(newID(), item(fmt.Sprintf("SHIP-%02d", i%50), 1)))
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
