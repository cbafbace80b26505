package consumer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/kafka"
)

// Without its dead-letter topic a partition cannot set a poison record
// aside and waits: that must show on Ready, not only in the logs, and end
// once the topic is there.
func TestMissingDLQTopicFailsReady(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.broker.Addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	dlq := "dlq." + b.service
	if _, err := adm.DeleteTopics(context.Background(), dlq); err != nil {
		t.Fatal(err)
	}
	r, _ := b.newRunner(t, applyEffect(""), nil)
	start(t, r)
	b.produce(t, b.record(uuid.NewString(), []byte("not json at all")))

	testenv.WaitFor(t, 30*time.Second, "Ready to name the missing DLQ", func() bool {
		err := r.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), dlq)
	})
	if err := kafka.EnsureTopics(context.Background(), b.broker.Addrs, kafka.Security{}, dlq); err != nil {
		t.Fatal(err)
	}
	b.deadLetters(t, 1)
	testenv.WaitFor(t, 10*time.Second, "Ready once the record is set aside", func() bool { return r.Ready(context.Background()) == nil })
}
