package loyalty

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/timer"
)

// BenchmarkHandleBatch measures the consumer handler alone: batches of
// 100 events (80 captures of new orders, then 10 cancellations and 10
// refunds of orders captured in the batch before), each batch applied in
// one transaction as the runner does, keys locked first.
//
//	go test -run '^$' -bench HandleBatch -benchtime 200x ./services/loyalty
func BenchmarkHandleBatch(b *testing.B) {
	h, pool := newHandler(b, time.Hour)
	var prev []string // the orders captured in the batch before
	batches := make([][]consumer.Message, b.N)
	for n := range batches {
		var ids []string
		for i := range 80 {
			id := newID()
			ids = append(ids, id)
			batches[n] = append(batches[n], message(b, captured(id, fmt.Sprintf("cust-%d", i%7), 12_345)))
		}
		for i, id := range prev[:min(len(prev), 20)] {
			if i < 10 {
				batches[n] = append(batches[n], message(b, cancelled(id)))
			} else {
				batches[n] = append(batches[n], message(b, refunded(id, "cust", 12_345)))
			}
		}
		prev = ids
	}
	events := 0
	b.ResetTimer()
	for _, msgs := range batches {
		if err := apply(b, h, pool, msgs); err != nil {
			b.Fatal(err)
		}
		events += len(msgs)
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkFireAwards measures the award timers' firing through the real
// timer worker (batches of 100): 100·N captures of 7 customers are
// handled with awards already due, then the worker fires them all.
//
//	go test -run '^$' -bench FireAwards -benchtime 50x ./services/loyalty
func BenchmarkFireAwards(b *testing.B) {
	h, pool := newHandler(b, -time.Second)
	total := 100 * b.N
	for n := range b.N {
		var msgs []consumer.Message
		for i := range 100 {
			msgs = append(msgs, message(b, captured(newID(), fmt.Sprintf("cust-%d", (n*100+i)%7), 12_345)))
		}
		if err := apply(b, h, pool, msgs); err != nil {
			b.Fatal(err)
		}
	}
	w, err := timer.New(timer.Config{
		Service: serviceName, Pool: pool, FireBatch: map[string]timer.BatchFireFunc{timerAward: h.fireAwards},
	}, h.log)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	run := testenv.Start(b, w.Run)
	testenv.WaitFor(b, 5*time.Minute, "every award given", func() bool {
		var n int
		err := pool.QueryRow(context.Background(), "SELECT count(*) FROM awards WHERE state = 'awarded'").Scan(&n)
		return err == nil && n == total
	})
	b.StopTimer()
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "fires/s")
	run.Halt(b)
}
