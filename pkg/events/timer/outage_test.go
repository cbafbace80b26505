package timer_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/timer"
)

// A database outage while timers fire (connections refused, sessions
// killed) loses none, fires none twice and spends no attempt: each timer
// fires once afterwards with Attempts 0, and Ready reports the wait while
// it lasts.
func TestDatabaseOutageSpendsNoAttempt(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	reg := prometheus.NewRegistry()
	slow := func(ctx context.Context, tx pgx.Tx, tm timer.Timer) error {
		if _, err := tx.Exec(ctx, "SELECT pg_sleep(0.005)"); err != nil {
			return err
		}
		return record("a")(ctx, tx, tm)
	}
	w := newWorker(t, pool, map[string]timer.FireFunc{"ship": slow}, func(c *timer.Config) {
		c.Registerer = reg
		c.Batch = 10
	})
	const n = 300
	due := time.Now().Add(-time.Second)
	for i := range n {
		schedule(t, pool, "ship", fmt.Sprintf("o-%d", i), due)
	}
	testenv.Start(t, w.Run)
	testenv.WaitFor(t, wait, "timers firing", func() bool { return count(t, pool, "SELECT count(*) FROM effects") >= 20 })

	end := pgtest.Outage(t, pool.Config().ConnString())
	testenv.WaitFor(t, wait, "Ready to report the wait", func() bool {
		err := w.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), "waiting for infrastructure")
	})
	time.Sleep(2 * time.Second)
	end()

	testenv.WaitFor(t, 60*time.Second, "every timer fired", func() bool {
		return count(t, pool, "SELECT count(*) FROM timers WHERE state = 'fired'") == n
	})
	if got := count(t, pool, "SELECT count(*) FROM effects"); got != n {
		t.Errorf("%d effects for %d timers", got, n)
	}
	if got := count(t, pool, "SELECT count(*) FROM timers WHERE attempts > 0 OR last_error <> ''"); got != 0 {
		t.Errorf("%d timers spent an attempt on the outage", got)
	}
	testenv.WaitFor(t, wait, "ready again", func() bool { return w.Ready(context.Background()) == nil })
}

// A FireFunc failing with a serialization failure or a deadlock (here
// raised by the server with those SQLSTATEs) is retried without spending
// the timer's attempts or pushing it back by its backoff.
func TestTransactionConflictSpendsNoAttempt(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	var mu sync.Mutex
	calls := 0
	conflicted := func(ctx context.Context, tx pgx.Tx, tm timer.Timer) error {
		mu.Lock()
		calls++
		c := calls
		mu.Unlock()
		codes := map[int]string{1: "40001", 2: "40P01"}
		if code, ok := codes[c]; ok {
			_, err := tx.Exec(ctx, fmt.Sprintf(`DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '%s'; END $$`, code))
			return err
		}
		return record("a")(ctx, tx, tm)
	}
	w := newWorker(t, pool, map[string]timer.FireFunc{"ship": conflicted}, func(c *timer.Config) {
		c.BaseBackoff = time.Hour // a spent attempt would park the timer for an hour
	})
	schedule(t, pool, "ship", "o-1", time.Now().Add(-time.Second))
	testenv.Start(t, w.Run)
	waitFired(t, pool, "ship", "o-1")
	if tm := get(t, pool, "ship", "o-1"); tm.Attempts != 0 || tm.LastError != "" {
		t.Errorf("attempts = %d, last error %q; want 0 and none", tm.Attempts, tm.LastError)
	}
}
