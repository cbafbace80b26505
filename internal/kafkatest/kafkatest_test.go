package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/pkg/events/contract"
)

// With KAFKA_TEST_SECURITY=on the tests' broker is really secured: the
// admin writes anywhere, a service's user only its own topic, and a client
// without credentials gets nothing.
func TestSecuredBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	t.Setenv("KAFKA_BROKERS", "")
	t.Setenv(SecurityVar, "on")
	b := Start(t)
	if !b.Secured() || b.Admin.TLS == nil {
		t.Fatalf("admin %v: want SCRAM over TLS", b.Admin)
	}
	produce := func(cl *kgo.Client, topic string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("{}")}).FirstErr()
	}
	if err := produce(b.Client(t), contract.TopicOrders); err != nil {
		t.Errorf("admin produce: %v", err)
	}
	payments := b.Service
	payments.User = "payments"
	opts := append([]kgo.Opt{kgo.SeedBrokers(b.Addrs...), kgo.RecordRetries(1), kgo.UnknownTopicRetries(0)}, payments.Opts()...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := produce(cl, contract.TopicPayments); err != nil {
		t.Errorf("payments writing its own topic: %v", err)
	}
	if err := produce(cl, contract.TopicOrders); err == nil {
		t.Error("payments wrote orders.events")
	}
	open, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs...), kgo.RecordRetries(1), kgo.RequestRetries(1))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := produce(open, contract.TopicPayments); err == nil {
		t.Error("a client without credentials or TLS wrote payments.events")
	}

	if env := b.Env(t); env["KAFKA_TLS_CA_FILE"] == "" || env["PAYMENTS_KAFKA_PASSWORD"] != b.Service.Password {
		t.Errorf("Env = %v: want the CA file and the services' passwords", env)
	}
}
