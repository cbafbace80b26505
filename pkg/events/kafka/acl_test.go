package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/pkg/events/kafka"
)

// With security on, the embedded broker lets a service's user write only
// its own topics, read only those it consumes and use only its group; a
// wrong password gets nothing.
func TestACLsHoldEachServiceToItsTopics(t *testing.T) {
	t.Parallel()
	admin := kafka.Security{Mechanism: kafka.ScramSHA512, User: "admin", Password: "admin-secret"}
	payments := kafka.Access{User: "payments", Group: "orderflow-payments",
		Consumes: []string{"orders", "warehouse"}, Writes: []string{"payments", "dlq.payments"}}
	e, err := kafka.StartEmbedded("127.0.0.1:0", "", kafka.EmbeddedSecurity{
		Admin: admin, Users: []kafka.Access{payments},
		Password: func(string) string { return "payments-secret" },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, e.Addrs(), admin, "orders", "payments", "warehouse", "loyalty", "dlq.payments"); err != nil {
		t.Fatalf("the admin creates topics: %v", err)
	}
	as := func(sec kafka.Security, opts ...kgo.Opt) *kgo.Client {
		cl, err := kgo.NewClient(append(append(sec.Opts(), kgo.SeedBrokers(e.Addrs()...), kgo.RequestRetries(0),
			kgo.RecordRetries(1), kgo.UnknownTopicRetries(0)), opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	me := kafka.Security{Mechanism: kafka.ScramSHA512, User: "payments", Password: "payments-secret"}
	produce := func(cl *kgo.Client, topic string) error {
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("{}")}).FirstErr()
	}
	cl := as(me)
	for _, topic := range []string{"payments", "dlq.payments"} {
		if err := produce(cl, topic); err != nil {
			t.Errorf("payments writing its own %s: %v", topic, err)
		}
	}
	for _, topic := range []string{"orders", "warehouse", "loyalty"} {
		if err := produce(as(me), topic); !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Errorf("payments forging a record on %s: %v, want TOPIC_AUTHORIZATION_FAILED", topic, err)
		}
	}

	// Reading: its own group on a topic it consumes, yes; another's group
	// or a topic it does not consume, no.
	if err := produce(as(admin), "orders"); err != nil {
		t.Fatal(err)
	}
	fetch := func(group, topic string, within time.Duration) error {
		c := as(me, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		fctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		for fctx.Err() == nil {
			fs := c.PollFetches(fctx)
			if err := fs.Err0(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			if fs.NumRecords() > 0 {
				return nil
			}
		}
		return fctx.Err()
	}
	if err := fetch("orderflow-payments", "orders", 25*time.Second); err != nil {
		t.Errorf("payments reading orders in its group: %v", err)
	}
	if err := fetch("orderflow-orders", "orders", 5*time.Second); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Errorf("payments joining orders' group: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
	if err := fetch("orderflow-payments", "loyalty", 5*time.Second); err == nil {
		t.Error("payments read loyalty's topic, which it does not consume")
	}

	wrong := me
	wrong.Password = "guess"
	if err := produce(as(wrong), "payments"); err == nil {
		t.Error("a wrong password produced")
	}
}

// Provision makes a service's user and ACLs on a cluster that has neither:
// afterwards the user writes its own topic and is refused another's; run
// again, it changes nothing.
func TestProvisionMakesUsersAndACLs(t *testing.T) {
	t.Parallel()
	admin := kafka.Security{Mechanism: kafka.ScramSHA512, User: "admin", Password: "admin-secret"}
	e, err := kafka.StartEmbedded("127.0.0.1:0", "", kafka.EmbeddedSecurity{Admin: admin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, e.Addrs(), admin, "orders", "payments", "dlq.payments"); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(admin.Opts(), kgo.SeedBrokers(e.Addrs()...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	payments := kafka.Access{User: "payments", Group: "orderflow-payments", Consumes: []string{"orders"}, Writes: []string{"payments", "dlq.payments"}}
	for range 2 {
		if err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.ScramSHA512, []kafka.Access{payments}, func(string) string { return "payments-secret" }); err != nil {
			t.Fatalf("provision: %v", err)
		}
	}
	me := kafka.Security{Mechanism: kafka.ScramSHA512, User: "payments", Password: "payments-secret"}
	produce := func(topic string) error {
		c, err := kgo.NewClient(append(me.Opts(), kgo.SeedBrokers(e.Addrs()...), kgo.RecordRetries(1), kgo.UnknownTopicRetries(0))...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("{}")}).FirstErr()
	}
	if err := produce("payments"); err != nil {
		t.Errorf("the provisioned user writing its topic: %v", err)
	}
	if err := produce("orders"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("the provisioned user writing orders: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
}
