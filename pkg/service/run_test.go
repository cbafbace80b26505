package service_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/service"
)

// A service makes sure of its own topics: the ones it consumes, emits to
// and dead-letters to are created if missing, and it is ready only then.
func TestRunCreatesItsTopics(t *testing.T) {
	b := kafkatest.Start(t)
	p := make([]byte, 4)
	_, _ = rand.Read(p)
	name := "svc" + hex.EncodeToString(p)
	consumes, emits := "in-"+name, "out-"+name
	addr := testenv.FreeAddr(t)
	cfg := service.Config{
		Name: name, HTTPAddr: addr, PostgresURL: pgtest.ServerURL(), Brokers: b.Addrs,
		Database: pgtest.DatabaseName(t, pgtest.NewDatabase(t)),
	}
	cfg.SetDefaults(name, addr)
	spec := service.Spec{
		Topics: []string{consumes},
		Emits:  []string{emits},
		Setup: func(service.Deps) (service.Parts, error) {
			return service.Parts{Handler: func(context.Context, pgx.Tx, consumer.Message) error { return nil }}, nil
		},
	}
	testenv.Start(t, func(ctx context.Context) error {
		return service.Run(ctx, cfg, spec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	})
	testenv.WaitFor(t, 30*time.Second, "/readyz 200", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want := []string{consumes, emits, "dlq." + name}
	listed, err := kadm.NewClient(cl).ListTopics(context.Background(), want...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range want {
		if d, ok := listed[topic]; !ok || d.Err != nil {
			t.Errorf("topic %s not created: %+v", topic, d)
		}
	}
}
