package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
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
