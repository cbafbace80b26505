package service_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
)

// A service makes sure of its own topics: the ones it consumes, emits to
// and dead-letters to are created if missing, and it is ready only then.
func TestRunCreatesItsTopics(t *testing.T) {
	name := "svc" + randHex()
	consumes, emits := "in-"+name, "out-"+name
	b, _ := startService(t, name, service.Spec{Topics: []string{consumes}, Emits: []string{emits}})
	cl, err := kgo.NewClient(b.Opts()...)
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

// A service that emits nothing runs no relay: no lease, no relay pool.
func TestNoRelayWithoutEmits(t *testing.T) {
	name := "svc" + randHex()
	for _, emits := range [][]string{{"out-" + name}, nil} {
		_, dbURL := startService(t, name, service.Spec{Topics: []string{"in-" + name}, Emits: emits})
		pool, err := postgres.Connect(context.Background(), dbURL, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		var leases int
		err = pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = $1`, service.ApplicationName(name)+"-relay-lease").Scan(&leases)
		if err != nil {
			t.Fatal(err)
		}
		if want := min(len(emits), 1); leases != want {
			t.Errorf("emits %v: %d relay lease connections, want %d", emits, leases, want)
		}
	}
}

// startService runs a service of spec (its handler does nothing) on the
// test broker and a database of its own until t ends, once /readyz says
// ready; it returns the broker and the database.
func startService(t *testing.T, name string, spec service.Spec) (*kafkatest.Broker, string) {
	t.Helper()
	b := kafkatest.Start(t)
	owner := pgtest.NewOwner(t)
	dbURL := pgtest.OwnerURL(t, owner)
	addr := testenv.FreeAddr(t)
	cfg := service.Config{
		Name: name, HTTPAddr: addr, PostgresURL: pgtest.ServerURL(), Brokers: b.Addrs, Kafka: b.Admin,
		Database: owner.Database, Role: owner.Role,
	}
	cfg.SetDefaults(name, addr)
	spec.Setup = func(service.Deps) (service.Parts, error) {
		return service.Parts{Handler: func(context.Context, pgx.Tx, consumer.Message) error { return nil }}, nil
	}
	r := testenv.Start(t, func(ctx context.Context) error {
		return service.Run(ctx, cfg, spec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	})
	t.Cleanup(r.Stop)
	testenv.WaitFor(t, 30*time.Second, "/readyz 200", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return b, dbURL
}

func randHex() string {
	p := make([]byte, 4)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}

// A service connects as its own role, never as a superuser, and says how
// to make the role when it is missing.
func TestRunRefusesSuperuserAndSaysHowToBootstrap(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	owner := pgtest.NewOwner(t)
	run := func(role string) error {
		addr := testenv.FreeAddr(t)
		cfg := service.Config{Name: "svc", HTTPAddr: addr, PostgresURL: pgtest.ServerURL(), Brokers: b.Addrs, Kafka: b.Admin,
			Database: owner.Database, Role: role}
		cfg.SetDefaults("svc", addr)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return service.Run(ctx, cfg, service.Spec{Setup: func(service.Deps) (service.Parts, error) { return service.Parts{}, nil }},
			slog.New(slog.DiscardHandler))
	}
	if err := run("postgres"); err == nil || !strings.Contains(err.Error(), "superuser") {
		t.Errorf("as the superuser postgres: %v, want refused", err)
	}
	if err := run(owner.Role + "_missing"); err == nil || !strings.Contains(err.Error(), "orderflowctl db bootstrap") {
		t.Errorf("as a role never bootstrapped: %v, want an error naming orderflowctl db bootstrap", err)
	}
}

// Stopped while it is still starting (connecting, migrating), a service
// returns nil: a clean stop, as `make run` stopped at once makes it.
func TestRunStoppedWhileStarting(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	owner := pgtest.NewOwner(t)
	for _, after := range []time.Duration{0, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond} {
		addr := testenv.FreeAddr(t)
		cfg := service.Config{Name: "svc", HTTPAddr: addr, PostgresURL: pgtest.ServerURL(), Brokers: b.Addrs, Kafka: b.Admin,
			Database: owner.Database, Role: owner.Role}
		cfg.SetDefaults("svc", addr)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(after, cancel)
		err := service.Run(ctx, cfg, service.Spec{Setup: func(service.Deps) (service.Parts, error) { return service.Parts{}, nil }},
			slog.New(slog.DiscardHandler))
		cancel()
		if err != nil {
			t.Errorf("stopped %v after the start: %v, want nil", after, err)
		}
	}
}
