package kafka_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/kafka"
)

// A keeper creates its missing topics, is ready only once they are there,
// and creates a deleted one again.
func TestKeeperCreatesAndRecreatesTopics(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	tag := randTag()
	topics := []string{"keeper-" + tag, "dlq.keeper-" + tag}
	k := kafka.NewKeeper(b.Addrs, topics, 100*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := k.Ready(context.Background()); err == nil {
		t.Fatal("ready before the first check")
	}
	testenv.Start(t, k.Run)
	testenv.WaitFor(t, 10*time.Second, "keeper ready", func() bool { return k.Ready(context.Background()) == nil })

	adm := admin(t, b.Addrs)
	listed, err := adm.ListTopics(context.Background(), topics...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		if d, ok := listed[topic]; !ok || d.Err != nil || len(d.Partitions) != kafka.Partitions {
			t.Errorf("topic %s: %+v, want %d partitions", topic, d, kafka.Partitions)
		}
	}

	if _, err := adm.DeleteTopics(context.Background(), topics[1]); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the deleted topic created again", func() bool {
		listed, err := adm.ListTopics(context.Background(), topics[1])
		return err == nil && listed[topics[1]].Err == nil && len(listed[topics[1]].Partitions) == kafka.Partitions
	})
}

// A topic the broker will not create keeps the keeper not ready, with the
// topic named, until the broker creates it.
func TestKeeperNotReadyWhileATopicIsMissing(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	if b.Embedded == nil {
		t.Skip("refusing CreateTopics needs the embedded broker's fault injection")
	}
	var refuse atomic.Bool
	refuse.Store(true)
	b.Embedded.Cluster().ControlKey(int16(kmsg.CreateTopics), func(req kmsg.Request) (kmsg.Response, error, bool) {
		b.Embedded.Cluster().KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		creq := req.(*kmsg.CreateTopicsRequest)
		resp := creq.ResponseKind().(*kmsg.CreateTopicsResponse)
		for _, rt := range creq.Topics {
			st := kmsg.NewCreateTopicsResponseTopic()
			st.Topic = rt.Topic
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	topic := "keeper-" + randTag()
	k := kafka.NewKeeper(b.Addrs, []string{topic}, 100*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	testenv.Start(t, k.Run)
	time.Sleep(500 * time.Millisecond) // a few checks
	if err := k.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), topic) {
		t.Fatalf("Ready = %v, want an error naming %q", err, topic)
	}
	refuse.Store(false)
	testenv.WaitFor(t, 10*time.Second, "ready once the broker creates the topic", func() bool { return k.Ready(context.Background()) == nil })
}

func admin(t *testing.T, brokers []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func randTag() string {
	p := make([]byte, 4)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}
