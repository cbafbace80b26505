package warehouse

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/timer"
	"github.com/orderflow/orderflow/services/warehouse/internal/warehousedb"
)

// samePartition returns n new order ids whose records all go to one
// partition of every topic (the producer hashes the key, and every topic
// has kafka.Partitions), so the consumer handles them in offset order,
// in batches once they are queued.
func samePartition(n int) []string {
	p := kgo.StickyKeyPartitioner(nil).ForTopic(contract.TopicPayments)
	part := func(id string) int { return p.Partition(&kgo.Record{Key: []byte(id)}, kafka.Partitions) }
	ids := []string{newID()}
	for len(ids) < n {
		if id := newID(); part(id) == part(ids[0]) {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestQueuedBatches commits records to the input topics before the
// service starts, so the consumer takes them in batches as queued, and
// checks that they end as handled one by one: forty orders after the ten
// units of one SKU get them strictly in offset order, with a poison
// record among them (dead-lettered at once, the others unharmed); a
// record delivered twice reserves once; an order captured twice reserves
// for the first capture only; scheduled picks cancelled twice in one
// batch are cancelled once; an order cancelled before its capture stays
// cancelled. Then the ship timers of the scheduled picks are made due at
// once, and the worker ships them in batches.
func TestQueuedBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupStopped(t, time.Hour)
	scarce, plenty := newSKU("SCARCE"), newSKU("PLENTY")
	if err := warehousedb.New(b.pool).SetStock(ctx, warehousedb.SetStockParams{Sku: scarce, Available: 10}); err != nil {
		t.Fatal(err)
	}

	// The picks cancelled in the queued batch are scheduled first, with
	// the service running.
	b.start(t)
	toCancel := samePartition(5)
	for _, id := range toCancel {
		b.in.Produce(t, captured(id, item(plenty, 2)))
	}
	for _, id := range toCancel {
		b.out.WaitLast(t, id, "PickScheduled")
	}
	b.run.Halt(t)

	ids := samePartition(44)
	competing, dup, twice, early := ids[:40], ids[40], ids[41], ids[42]
	poison := ids[43]
	var queued []contract.Event
	for i, id := range competing {
		if i == 20 {
			queued = append(queued, captured(poison, item("BAD\x00"+scarce, 1)))
		}
		queued = append(queued, captured(id, item(scarce, 1), item(plenty, 1)))
	}
	queued = append(queued,
		captured(twice, item(plenty, 3)), captured(twice, item(plenty, 5)),
		cancelled(early), captured(early, item(plenty, 7)))
	for _, id := range toCancel {
		queued = append(queued, cancelled(id), cancelled(id))
	}
	b.in.ProduceAll(t, queued...)
	dupEv := captured(dup, item(plenty, 4))
	value := b.in.Produce(t, dupEv)
	b.in.ProduceRaw(t, dupEv, value)
	b.start(t)

	for i, id := range competing {
		want := "PickScheduled"
		if i >= 10 {
			want = "StockUnavailable"
		}
		if got := b.out.WaitLast(t, id, want); len(got) != 1 {
			t.Errorf("order %d: emitted %v, want [%s]", i, got, want)
		}
	}
	b.waitInventory(t, scarce, 0, 10)
	for _, id := range toCancel {
		b.out.WaitLast(t, id, "PickCancelled")
	}
	b.passMarker(t, early)
	b.passMarker(t, dup)
	for id, want := range map[string]string{
		dup: "[PickScheduled]", twice: "[PickScheduled]", early: "[]", toCancel[0]: "[PickScheduled PickCancelled]",
	} {
		if got := fmt.Sprint(b.outboxEvents(t, id)); got != want {
			t.Errorf("order %s: outbox %s, want %s", id, got, want)
		}
	}
	// dup 4 and twice 3 (not 5) reserved, the cancelled picks' 10 back.
	b.waitInventory(t, plenty, 1000-10-4-3, 10+4+3)
	b.shipment(t, early, func(s shipmentJSON) bool { return s.Status == statusCancelled && s.PickID == nil })
	testenv.WaitFor(t, 30*time.Second, "the poison record dead-lettered", func() bool { return len(b.dlq.Names(poison)) == 1 })
	if rec := b.dlq.Records(poison)[0]; rec.Headers["x-dlq-attempts"] != "1" {
		t.Errorf("poison dead-lettered after %s attempts, want 1", rec.Headers["x-dlq-attempts"])
	}
	b.noDeadLetters(t, ids[:43]...)
	if n := b.transactions(t, competing, "PickScheduled", "StockUnavailable"); n >= len(competing)/2 {
		t.Errorf("the competing orders' events were written by %d transactions: the records were not batched", n)
	} else {
		t.Logf("the %d competing orders were decided in %d transactions", len(competing), n)
	}

	// Every scheduled pick's timer due now: the worker ships them in
	// batches, each with its pick and the correlation id of its capture.
	scheduled := append(slices.Clone(competing[:10]), dup, twice)
	if _, err := b.pool.Exec(ctx, "UPDATE timers SET due_at = now() WHERE state = 'pending'"); err != nil {
		t.Fatal(err)
	}
	for _, id := range scheduled {
		b.out.WaitLast(t, id, "OrderShipped")
		b.shipped(t, id)
		if s := b.timerState(t, id); s != timer.StateFired {
			t.Errorf("order %s: ship timer %s", id, s)
		}
	}
	b.waitInventory(t, scarce, 0, 0)
	b.waitInventory(t, plenty, 1000-10-4-3, 0)
	for _, id := range toCancel {
		if s := b.timerState(t, id); s != timer.StateCancelled {
			t.Errorf("order %s: ship timer %s, want cancelled", id, s)
		}
	}
	t.Logf("%d picks shipped in %d transactions", len(scheduled), b.transactions(t, scheduled, "OrderShipped"))
}

// transactions counts the transactions that wrote the orders' events of
// the given types.
func (b *bundle) transactions(t *testing.T, orderIDs []string, types ...string) int {
	t.Helper()
	var n int
	err := b.pool.QueryRow(context.Background(),
		"SELECT count(DISTINCT txid) FROM outbox WHERE key = ANY($1) AND event_type = ANY($2)", orderIDs, types).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
