package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// orderflowctl db bootstrap makes every service's database owned by its
// role, and run again changes nothing.
func TestDBBootstrap(t *testing.T) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "orderflow_ctl_" + hex.EncodeToString(b) + "_"
	t.Setenv("DATABASE_PREFIX", prefix)
	t.Setenv("POSTGRES_ADMIN_URL", "")
	t.Setenv("POSTGRES_URL", pgtest.ServerURL())
	for _, name := range services {
		o := postgres.Owner{Database: prefix + name, Role: prefix + name}
		t.Cleanup(func() { _ = postgres.DropOwner(context.Background(), pgtest.ServerURL(), o) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 2 {
		var out bytes.Buffer
		if err := run(ctx, []string{"db", "bootstrap"}, &out, time.Now()); err != nil {
			t.Fatalf("db bootstrap: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "owned by role "+prefix+"orders") {
			t.Errorf("output names no orders role:\n%s", out.String())
		}
	}
	admin, err := pgx.Connect(ctx, pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for _, name := range services {
		var owner string
		err := admin.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", prefix+name).Scan(&owner)
		if err != nil || owner != prefix+name {
			t.Errorf("%s: database owned by %q (%v), want its role %s", name, owner, err, prefix+name)
		}
	}
}

// orderflowctl's Kafka clients authenticate as the services' variables
// say: with KAFKA_SASL_* set they reach a broker that requires it, and
// without them they do not.
func TestKafkaClientAuthenticates(t *testing.T) {
	admin := kafka.Security{Mechanism: kafka.ScramSHA512, User: "ops", Password: "ops-secret"}
	e, err := kafka.StartEmbedded("127.0.0.1:0", "", kafka.EmbeddedSecurity{Admin: admin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	list := func() error {
		cl, err := newKafkaClient(e.Addrs(), kgo.RequestRetries(0))
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = kadm.NewClient(cl).ListTopics(ctx)
		return err
	}
	t.Setenv("KAFKA_SASL_MECHANISM", "")
	if err := list(); err == nil {
		t.Error("an unauthenticated client listed the topics")
	}
	t.Setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("KAFKA_SASL_USER", "ops")
	t.Setenv("KAFKA_SASL_PASSWORD", "ops-secret")
	if err := list(); err != nil {
		t.Errorf("with KAFKA_SASL_*: %v", err)
	}
}

// orderflowctl kafka bootstrap makes, on a cluster with only a superuser,
// every topic and each service's user held to its ACLs; run again it
// changes nothing.
func TestKafkaBootstrap(t *testing.T) {
	admin := kafka.Security{Mechanism: kafka.ScramSHA512, User: "ops", Password: "ops-secret"}
	e, err := kafka.StartEmbedded("127.0.0.1:0", "", kafka.EmbeddedSecurity{Admin: admin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	t.Setenv("KAFKA_BROKERS", strings.Join(e.Addrs(), ","))
	t.Setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("KAFKA_SASL_USER", "ops")
	t.Setenv("KAFKA_SASL_PASSWORD", "ops-secret")
	for _, s := range services {
		t.Setenv(strings.ToUpper(s)+"_KAFKA_PASSWORD", s+"-secret")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 2 {
		var out bytes.Buffer
		if err := run(ctx, []string{"kafka", "bootstrap"}, &out, time.Now()); err != nil {
			t.Fatalf("kafka bootstrap: %v\n%s", err, out.String())
		}
	}
	me := kafka.Security{Mechanism: kafka.ScramSHA512, User: "payments", Password: "payments-secret"}
	cl, err := kgo.NewClient(append(me.Opts(), kgo.SeedBrokers(e.Addrs()...), kgo.RecordRetries(1), kgo.UnknownTopicRetries(0))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "payments", Value: []byte("{}")}).FirstErr(); err != nil {
		t.Errorf("payments writing its topic: %v", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("{}")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("payments writing orders: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
}
