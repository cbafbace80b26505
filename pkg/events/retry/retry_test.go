package retry_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/retry"
)

// The errors are made for real: a refused connection, a session killed by
// an operator, a database closed to connections, a deadlock, and the
// statement errors a handler's own bug gives.
func TestInfrastructure(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	conn := func(t *testing.T) *pgx.Conn {
		t.Helper()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		return c
	}
	c := conn(t)
	if _, err := c.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}

	_, refused := pgx.Connect(ctx, "postgres://postgres@"+testenv.FreeAddr(t)+"/x?connect_timeout=2")

	killed := conn(t)
	pgtest.Terminate(t, url)
	_, terminated := killed.Exec(ctx, "SELECT 1")
	_, afterTerminate := killed.Exec(ctx, "SELECT 1")

	end := pgtest.Outage(t, url)
	_, notAccepting := pgx.Connect(ctx, url)
	end()

	// A pool whose one connection is taken: acquiring times out.
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	held, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, acquireTimeout := pool.Acquire(actx)
	cancel()
	held.Release()

	c = conn(t) // the outage ended the first one too
	_, unique := c.Exec(ctx, "INSERT INTO t VALUES (1), (1)")
	_, syntax := c.Exec(ctx, "SELEKT")
	_, division := c.Exec(ctx, "SELECT 1/0")

	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"session terminated (57P01)", terminated, true},
		{"closed connection used again", afterTerminate, true},
		{"database not accepting connections", notAccepting, true},
		{"pool acquire timeout", acquireTimeout, true},
		{"deadlock (40P01)", &pgconn.PgError{Code: "40P01"}, true},
		{"serialization failure (40001)", &pgconn.PgError{Code: "40001"}, true},
		{"too many clients (53300)", &pgconn.PgError{Code: "53300"}, true},
		{"wrapped twice", fmt.Errorf("handler: %w", fmt.Errorf("insert: %w", terminated)), true},
		{"unique violation", unique, false},
		{"syntax error", syntax, false},
		{"division by zero", division, false},
		{"handler's own error", errors.New("gateway declined"), false},
		{"context canceled", context.Canceled, false},
		{"nil", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil && tc.want {
				t.Fatal("the failure was not provoked")
			}
			if got := retry.Infrastructure(tc.err); got != tc.want {
				t.Errorf("Infrastructure(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestOutage(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := retry.NewOutage("consumer", reg)
	if o.Err() != nil {
		t.Fatalf("new outage: %v", o.Err())
	}
	cause := errors.New("connection refused")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if o.Wait(ctx, 1, cause) {
		t.Fatal("Wait with a done context reported true")
	}
	if err := o.Err(); !errors.Is(err, cause) {
		t.Fatalf("Err = %v, want it to wrap the cause", err)
	}
	if got := gauge(t, reg, "orderflow_infrastructure_retries_total"); got != 1 {
		t.Errorf("retries = %v, want 1", got)
	}
	if got := gauge(t, reg, "orderflow_infrastructure_waiting"); got != 1 {
		t.Errorf("waiting = %v, want 1", got)
	}
	o.Recovered()
	if o.Err() != nil {
		t.Fatalf("after Recovered: %v", o.Err())
	}
	if got := gauge(t, reg, "orderflow_infrastructure_waiting"); got != 0 {
		t.Errorf("waiting after Recovered = %v, want 0", got)
	}
}

// gauge is the value of the one series of a metric family in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestBackoff(t *testing.T) {
	b := retry.Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	for n := 1; n <= 40; n++ {
		ceiling := min(b.Max, b.Base<<min(n-1, 30))
		for range 50 {
			if d := b.Delay(n); d < 0 || d > ceiling {
				t.Fatalf("Delay(%d) = %s, outside [0, %s]", n, d, ceiling)
			}
		}
	}
}
