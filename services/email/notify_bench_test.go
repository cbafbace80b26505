package email

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/outbox"
)

// BenchmarkNotifyBatch measures the notifier's handler alone on batches of
// 100 events, each batch applied in one transaction, keys locked first,
// as the runner does: the batch handler, and the former per-record one
// through consumer.PerRecord. A batch holds 25 orders' OrderPlaced,
// PaymentCaptured and OrderShipped (a fifth of the shipments before the
// placement, so they wait) and 25 refunds or failures of other orders;
// 75 emails. It reports each record's time and statements.
//
//	go test -run '^$' -bench NotifyBatch -benchtime 100x ./services/email
func BenchmarkNotifyBatch(b *testing.B) {
	for _, c := range []struct {
		name   string
		handle func(*notifier) consumer.BatchHandler
	}{
		{"batch", func(n *notifier) consumer.BatchHandler { return n.handle }},
		{"perrecord", func(n *notifier) consumer.BatchHandler { return consumer.PerRecord(n.handleRecord) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			n, pool := newNotifier(b)
			h := c.handle(n)
			batches := make([][]consumer.Message, b.N)
			for i := range batches {
				batches[i] = benchBatch(b, i)
			}
			ctx := context.Background()
			statements, records := 0, 0
			b.ResetTimer()
			for _, msgs := range batches {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					keys := make([]string, len(msgs))
					for i, m := range msgs {
						keys[i] = m.Envelope.OrderID
					}
					if err := outbox.LockKeys(ctx, tx, slices.Sorted(slices.Values(keys))); err != nil {
						return err
					}
					return h(ctx, countingTx{tx, &statements}, msgs)
				})
				if err != nil {
					b.Fatal(err)
				}
				records += len(msgs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(records), "ns/record")
			b.ReportMetric(float64(statements)/float64(records), "stmts/record")
		})
	}
}

// benchBatch is the i-th batch of BenchmarkNotifyBatch.
func benchBatch(b *testing.B, i int) []consumer.Message {
	var msgs []consumer.Message
	for j := range 25 {
		id := newID()
		to := fmt.Sprintf("o%d.%d@example.com", i, j)
		evs := []contract.Event{placed(id, to), captured(id, to), shipped(id)}
		if j%5 == 0 {
			evs = []contract.Event{shipped(id), placed(id, to), captured(id, to)}
		}
		for _, ev := range evs {
			msgs = append(msgs, consumed(b, ev))
		}
		other := newID()
		if j%2 == 0 {
			msgs = append(msgs, consumed(b, &contract.PaymentRefunded{Envelope: contract.Envelope{OrderID: other}, PaymentID: newID(),
				CustomerID: "c-1", Email: to, AmountCents: 2500, Reason: "customer_request"}))
		} else {
			msgs = append(msgs, consumed(b, &contract.PaymentFailed{Envelope: contract.Envelope{OrderID: other}, CustomerID: "c-1", Email: to, Reason: "declined"}))
		}
	}
	return msgs
}
