// Package kafkatest gives tests a Kafka to talk to: the cluster named by
// KAFKA_BROKERS when set, otherwise an embedded broker started in-process
// for the test and stopped when it ends.
package kafkatest

import (
	"context"
	"os"
	"testing"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/events/kafka"
)

// Broker is what a test got.
type Broker struct {
	Addrs []string
	// Embedded is nil when the test runs against a real cluster; tests that
	// inject faults skip themselves in that case.
	Embedded *kafka.Embedded
}

// Start returns a broker with every Orderflow topic created.
func Start(t testing.TB) *Broker {
	t.Helper()
	b := &Broker{}
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		b.Addrs = kafka.ParseBrokers(env)
	} else {
		e, err := kafka.StartEmbedded("127.0.0.1:0", "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		b.Embedded, b.Addrs = e, e.Addrs()
	}
	if err := kafka.EnsureTopics(context.Background(), b.Addrs, kafka.Security{}, registry.Topics()...); err != nil {
		t.Fatal(err)
	}
	return b
}
