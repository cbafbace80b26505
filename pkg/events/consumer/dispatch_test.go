package consumer_test

import (
	"context"
	"encoding/json"
	"errors"
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

// A Decoder decodes each event it names into the service's record, by
// type; other events are not its business, and a payload that does not
// decode is permanent.
func TestDecoderByType(t *testing.T) {
	var d consumer.Decoder[string]
	consumer.Decodes(&d, func(e *contract.OrderPlaced, msg consumer.Message) (string, error) {
		return "placed " + e.Items[0].SKU, nil
	})
	consumer.Decodes(&d, func(e *contract.OrderCancelled, msg consumer.Message) (string, error) {
		return "cancelled " + e.Reason, nil
	})
	if got := d.Events(); len(got) != 2 || got[0] != "OrderPlaced" || got[1] != "OrderCancelled" {
		t.Fatalf("Events() = %v, want [OrderPlaced OrderCancelled]", got)
	}
	message := func(ev contract.Event) consumer.Message {
		value, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return consumer.Message{Value: value, Envelope: contract.Envelope{Event: ev.Name()}}
	}
	orderID := uuid.NewString()
	placed := &contract.OrderPlaced{Envelope: contract.Envelope{OrderID: orderID}, Items: []contract.Item{{SKU: "sku-1", Quantity: 1}}}
	if r, ok, err := d.Decode(message(placed)); r != "placed sku-1" || !ok || err != nil {
		t.Errorf("OrderPlaced: %q, %t, %v", r, ok, err)
	}
	cancelled := &contract.OrderCancelled{Envelope: contract.Envelope{OrderID: orderID}, Reason: "customer_request"}
	if r, ok, err := d.Decode(message(cancelled)); r != "cancelled customer_request" || !ok || err != nil {
		t.Errorf("OrderCancelled: %q, %t, %v", r, ok, err)
	}
	if _, ok, err := d.Decode(message(&contract.PaymentCaptured{})); ok || err != nil {
		t.Errorf("PaymentCaptured: %t, %v; want not decoded, no error", ok, err)
	}
	bad := consumer.Message{Value: []byte(`{"items": 7}`), Envelope: contract.Envelope{Event: "OrderPlaced"}}
	if _, ok, err := d.Decode(bad); ok || !errors.Is(err, consumer.ErrPermanent) {
		t.Errorf("undecodable OrderPlaced: %t, %v; want a permanent error", ok, err)
	}
	defer func() {
		if recover() == nil {
			t.Error("a second decoder for OrderPlaced was accepted")
		}
	}()
	consumer.Decodes(&d, func(*contract.OrderPlaced, consumer.Message) (string, error) { return "", nil })
}
