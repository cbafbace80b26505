package consumer_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
)

// A service names each event once, by type: its handler gets the event
// decoded, and the runner passes over the events it has no handler for.
func TestDispatchByType(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var d consumer.Dispatch
	var gotSKU atomic.Value
	consumer.On(&d, func(ctx context.Context, tx pgx.Tx, e *contract.OrderPlaced, msg consumer.Message) error {
		gotSKU.Store(e.Items[0].SKU)
		return applyEffect("")(ctx, tx, msg)
	})
	if got := d.Events(); len(got) != 1 || got[0] != "OrderPlaced" {
		t.Fatalf("Events() = %v, want [OrderPlaced]", got)
	}
	r, reg := b.newRunner(t, d.Handler(), func(c *consumer.Config) { c.Events = d.Events() })
	start(t, r)

	orderID := uuid.NewString()
	value, _ := placed(t, orderID, 1)
	other, err := json.Marshal(&contract.OrderCancelled{
		Envelope: contract.Envelope{Event: "OrderCancelled", Version: 1, EventID: uuid.NewString(), OrderID: orderID, OccurredAt: time.Now().UTC()},
		Reason:   "customer_request",
	})
	if err != nil {
		t.Fatal(err)
	}
	b.produce(t, b.record(orderID, value), b.record(orderID, other))
	testenv.WaitFor(t, 20*time.Second, "one handled, one passed over", func() bool {
		return handled(t, reg, b.topic, "ok") == 1 && handled(t, reg, b.topic, "ignored") == 1
	})
	if b.effects(t) != 1 || gotSKU.Load() != "sku-1" {
		t.Errorf("effects %d, decoded SKU %v; want 1 and sku-1", b.effects(t), gotSKU.Load())
	}
}

func TestDispatchRefusesTwoHandlersForOneEvent(t *testing.T) {
	var d consumer.Dispatch
	h := func(context.Context, pgx.Tx, *contract.OrderPlaced, consumer.Message) error { return nil }
	consumer.On(&d, h)
	defer func() {
		if recover() == nil {
			t.Error("a second handler for OrderPlaced was accepted")
		}
	}()
	consumer.On(&d, h)
}
