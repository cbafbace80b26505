package timer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/timer"
)

const wait = 20 * time.Second // generous deadline for conditions

// setup returns a pool on a fresh database with the timers table and an
// effects table the test FireFuncs write to: a plain table, so a timer
// fired twice would show as two rows.
func setup(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	if err := timer.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	_, err := pool.Exec(ctx, `CREATE TABLE effects (
		kind   text        NOT NULL,
		key    text        NOT NULL,
		worker text        NOT NULL,
		at     timestamptz NOT NULL DEFAULT now() -- the firing transaction's start
	)`)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// record is a FireFunc that inserts an effects row for the timer.
func record(worker string) timer.FireFunc {
	return func(ctx context.Context, tx pgx.Tx, t timer.Timer) error {
		_, err := tx.Exec(ctx, "INSERT INTO effects (kind, key, worker) VALUES ($1, $2, $3)", t.Kind, t.Key, worker)
		return err
	}
}

// newWorker returns a worker on pool with test defaults; edit adjusts cfg.
func newWorker(t *testing.T, pool *pgxpool.Pool, fire map[string]timer.FireFunc, edit ...func(*timer.Config)) *timer.Worker {
	t.Helper()
	cfg := timer.Config{Service: "test", Pool: pool, Fire: fire, MaxPoll: 100 * time.Millisecond}
	for _, e := range edit {
		e(&cfg)
	}
	w, err := timer.New(cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func inTx(t *testing.T, pool *pgxpool.Pool, f func(tx pgx.Tx) error) {
	t.Helper()
	if err := pgx.BeginFunc(context.Background(), pool, f); err != nil {
		t.Fatal(err)
	}
}

func schedule(t *testing.T, pool *pgxpool.Pool, kind, key string, due time.Time) bool {
	t.Helper()
	var added bool
	inTx(t, pool, func(tx pgx.Tx) (err error) {
		added, err = timer.Schedule(context.Background(), tx, kind, key, due, []byte(`{"n":1}`))
		return err
	})
	return added
}

// cancel cancels (kind, key) the way services do: under the key's lock.
func cancel(t *testing.T, pool *pgxpool.Pool, kind, key string) bool {
	t.Helper()
	var cancelled bool
	inTx(t, pool, func(tx pgx.Tx) (err error) {
		ctx := context.Background()
		if err := outbox.LockKey(ctx, tx, key); err != nil {
			return err
		}
		cancelled, err = timer.Cancel(ctx, tx, kind, key)
		return err
	})
	return cancelled
}

func get(t *testing.T, pool *pgxpool.Pool, kind, key string) timer.Timer {
	t.Helper()
	tm, err := timer.Get(context.Background(), pool, kind, key)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitFired(t *testing.T, pool *pgxpool.Pool, kind, key string) {
	t.Helper()
	testenv.WaitFor(t, wait, kind+" "+key+" to fire", func() bool {
		return get(t, pool, kind, key).State == timer.StateFired
	})
}

// metric reads a series of name with the given labels from reg.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

// A timer fires once it is due, and its effect and the fired mark commit
// together: no snapshot shows one without the other.
func TestFiresOnceAfterDue(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	reg := prometheus.NewRegistry()
	var afterCommit atomic.Int32
	w := newWorker(t, pool, map[string]timer.FireFunc{"ship": record("a")}, func(c *timer.Config) {
		c.Registerer = reg
		c.AfterCommit = func() { afterCommit.Add(1) }
	})
	if !schedule(t, pool, "ship", "o-1", time.Now().Add(300*time.Millisecond)) {
		t.Fatal("Schedule of a new timer = false")
	}
	if got := metric(t, reg, "orderflow_timers_pending", "kind", "ship"); got != 1 {
		t.Errorf("orderflow_timers_pending = %v, want 1", got)
	}
	testenv.Start(t, w.Run)
	w.Kick()

	testenv.WaitFor(t, wait, "o-1 to fire", func() bool {
		var effects int
		var state string
		err := pool.QueryRow(context.Background(), `
			SELECT (SELECT count(*) FROM effects WHERE key = 'o-1'),
			       (SELECT state FROM timers WHERE key = 'o-1')`).Scan(&effects, &state)
		if err != nil {
			t.Fatal(err)
		}
		if effects > 1 || (effects == 1) != (state == timer.StateFired) {
			t.Fatalf("effects = %d with state %s", effects, state)
		}
		return state == timer.StateFired
	})
	var afterDue bool
	err := pool.QueryRow(context.Background(),
		`SELECT e.at >= t.due_at FROM effects e JOIN timers t USING (kind, key) WHERE key = 'o-1'`).Scan(&afterDue)
	if err != nil || !afterDue {
		t.Errorf("fired before its due time (%v)", err)
	}
	if tm := get(t, pool, "ship", "o-1"); tm.Attempts != 0 || string(tm.Payload) != `{"n":1}` {
		t.Errorf("timer = %+v", tm)
	}
	if afterCommit.Load() == 0 {
		t.Error("AfterCommit not called")
	}
	if got := metric(t, reg, "orderflow_timers_fired_total", "kind", "ship", "result", "ok"); got != 1 {
		t.Errorf("orderflow_timers_fired_total{ok} = %v, want 1", got)
	}
	if got := metric(t, reg, "orderflow_timers_pending", "kind", "ship"); got != 0 {
		t.Errorf("orderflow_timers_pending after firing = %v, want 0", got)
	}
}

// Two workers, each on its own pool as two service instances would be, fire
// 500 timers due at once (two kinds per key) exactly once each.
func TestTwoWorkers(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	pool2, err := pgxpool.NewWithConfig(context.Background(), pool.Config().Copy())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool2.Close)

	due := time.Now().Add(-time.Second)
	inTx(t, pool, func(tx pgx.Tx) error {
		for i := range 250 {
			for _, kind := range []string{"ship", "award"} {
				if _, err := timer.Schedule(context.Background(), tx, kind, fmt.Sprintf("o-%d", i), due, nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	for _, w := range []*timer.Worker{
		newWorker(t, pool, map[string]timer.FireFunc{"ship": record("a"), "award": record("a")}),
		newWorker(t, pool2, map[string]timer.FireFunc{"ship": record("b"), "award": record("b")}),
	} {
		testenv.Start(t, w.Run)
	}

	testenv.WaitFor(t, wait, "all timers to fire", func() bool {
		return count(t, pool, "SELECT count(*) FROM timers WHERE state = 'pending'") == 0
	})
	if n := count(t, pool, "SELECT count(*) FROM effects"); n != 500 {
		t.Errorf("%d effects, want 500", n)
	}
	if n := count(t, pool, "SELECT count(DISTINCT (kind, key)) FROM effects"); n != 500 {
		t.Errorf("%d distinct timers fired, want 500", n)
	}
	t.Logf("worker a fired %d, worker b %d",
		count(t, pool, "SELECT count(*) FROM effects WHERE worker = 'a'"),
		count(t, pool, "SELECT count(*) FROM effects WHERE worker = 'b'"))
}

// A worker stopped in the middle of firing commits nothing; a worker started
// later fires every timer, the ones that were due and the ones that became
// due meanwhile, once each.
func TestRestart(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	now := time.Now()
	for i := range 10 {
		schedule(t, pool, "ship", fmt.Sprintf("early-%d", i), now.Add(-time.Second))
		schedule(t, pool, "ship", fmt.Sprintf("late-%d", i), now.Add(time.Second))
	}

	// Worker A writes its effect, then hangs until it is stopped.
	started := make(chan struct{})
	var once sync.Once
	a := newWorker(t, pool, map[string]timer.FireFunc{"ship": func(ctx context.Context, tx pgx.Tx, tm timer.Timer) error {
		if err := record("a")(ctx, tx, tm); err != nil {
			return err
		}
		once.Do(func() { close(started) })
		<-ctx.Done()
		return ctx.Err()
	}})
	runA := testenv.Start(t, a.Run)
	select {
	case <-started:
	case <-time.After(wait):
		t.Fatal("worker a did not fire")
	}
	runA.Halt(t)

	b := newWorker(t, pool, map[string]timer.FireFunc{"ship": record("b")})
	testenv.Start(t, b.Run)
	testenv.WaitFor(t, wait, "all timers to fire", func() bool {
		return count(t, pool, "SELECT count(*) FROM timers WHERE state = 'pending'") == 0
	})
	if n := count(t, pool, "SELECT count(*) FROM effects WHERE worker = 'b'"); n != 20 {
		t.Errorf("worker b fired %d, want 20", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM effects WHERE worker = 'a'"); n != 0 {
		t.Errorf("%d effects of the stopped worker committed", n)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	now := time.Now()
	schedule(t, pool, "ship", "c-1", now.Add(500*time.Millisecond))
	if !cancel(t, pool, "ship", "c-1") {
		t.Fatal("Cancel of a pending timer = false")
	}
	if cancel(t, pool, "ship", "c-1") {
		t.Error("second Cancel = true")
	}
	if cancel(t, pool, "ship", "never") {
		t.Error("Cancel of a timer never scheduled = true")
	}
	if schedule(t, pool, "ship", "c-1", now) {
		t.Error("Schedule of a cancelled timer = true")
	}
	// A timer due after the cancelled one: once it fired, so would have the
	// cancelled one.
	schedule(t, pool, "ship", "c-2", now.Add(600*time.Millisecond))

	w := newWorker(t, pool, map[string]timer.FireFunc{"ship": record("a")})
	testenv.Start(t, w.Run)
	waitFired(t, pool, "ship", "c-2")
	if n := count(t, pool, "SELECT count(*) FROM effects WHERE key = 'c-1'"); n != 0 {
		t.Errorf("cancelled timer fired %d times", n)
	}
	if tm := get(t, pool, "ship", "c-1"); tm.State != timer.StateCancelled {
		t.Errorf("cancelled timer state = %s", tm.State)
	}
	if cancel(t, pool, "ship", "c-2") {
		t.Error("Cancel after firing = true")
	}
	if _, err := timer.Get(context.Background(), pool, "ship", "never"); !errors.Is(err, timer.ErrNotFound) {
		t.Errorf("Get of a timer never scheduled: %v", err)
	}
}

// A Cancel under the key's lock waits for a firing in progress and then
// reports false.
func TestCancelWaitsForFiring(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	started, release := make(chan struct{}), make(chan struct{})
	w := newWorker(t, pool, map[string]timer.FireFunc{"ship": func(ctx context.Context, tx pgx.Tx, tm timer.Timer) error {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return record("a")(ctx, tx, tm)
	}})
	schedule(t, pool, "ship", "k", time.Now())
	testenv.Start(t, w.Run)
	<-started

	cancelled := make(chan bool, 1)
	go func() {
		var ok bool
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) (err error) {
			if err := outbox.LockKey(ctx, tx, "k"); err != nil {
				return err
			}
			ok, err = timer.Cancel(ctx, tx, "ship", "k")
			return err
		})
		if err != nil {
			t.Error(err)
		}
		cancelled <- ok
	}()
	testenv.WaitFor(t, wait, "Cancel to wait for the key's lock", func() bool {
		return count(t, pool, `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted
			  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`) > 0
	})
	close(release)
	if <-cancelled {
		t.Error("Cancel during firing = true")
	}
	if tm := get(t, pool, "ship", "k"); tm.State != timer.StateFired {
		t.Errorf("state = %s, want fired", tm.State)
	}
	if n := count(t, pool, "SELECT count(*) FROM effects"); n != 1 {
		t.Errorf("%d effects, want 1", n)
	}
}

// A failing Fire is rolled back and retried after its backoff while the
// other timers of its batch fire; it fires once when it succeeds.
func TestFailingFireRetries(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	reg := prometheus.NewRegistry()
	var mu sync.Mutex
	var calls []time.Time // the flaky timer's transaction start per call
	flaky := func(ctx context.Context, tx pgx.Tx, tm timer.Timer) error {
		if err := record("a")(ctx, tx, tm); err != nil {
			return err
		}
		var now time.Time
		if err := tx.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, now)
		if len(calls) <= 2 {
			return errors.New("gateway down")
		}
		return nil
	}
	const base = 100 * time.Millisecond
	w := newWorker(t, pool, map[string]timer.FireFunc{"flaky": flaky, "ship": record("a")}, func(c *timer.Config) {
		c.BaseBackoff = base
		c.Registerer = reg
	})
	due := time.Now().Add(-time.Second)
	schedule(t, pool, "flaky", "f", due)
	for i := range 5 {
		schedule(t, pool, "ship", fmt.Sprintf("s-%d", i), due)
	}
	testenv.Start(t, w.Run)
	waitFired(t, pool, "flaky", "f")

	tm := get(t, pool, "flaky", "f")
	if tm.Attempts != 2 || !strings.Contains(tm.LastError, "gateway down") {
		t.Errorf("attempts = %d, last error %q; want 2, gateway down", tm.Attempts, tm.LastError)
	}
	if n := count(t, pool, "SELECT count(*) FROM effects WHERE key = 'f'"); n != 1 {
		t.Errorf("flaky timer has %d effects, want 1 (failed calls rolled back)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	// The other timers fired in the transaction of the first failure.
	if n := count(t, pool, "SELECT count(*) FROM effects WHERE kind = 'ship' AND at = $1", calls[0]); n != 5 {
		t.Errorf("%d of 5 other timers fired with the first failure", n)
	}
	// Retries come no sooner than half their backoff (base, then 2*base).
	for i, least := range []time.Duration{base / 2, base} {
		if gap := calls[i+1].Sub(calls[i]); gap < least-time.Millisecond {
			t.Errorf("retry %d after %s, want >= %s", i+1, gap, least)
		}
	}
	for _, c := range []struct {
		kind, result string
		want         float64
	}{{"flaky", "retry", 2}, {"flaky", "ok", 1}, {"ship", "ok", 5}} {
		if got := metric(t, reg, "orderflow_timers_fired_total", "kind", c.kind, "result", c.result); got != c.want {
			t.Errorf("orderflow_timers_fired_total{%s,%s} = %v, want %v", c.kind, c.result, got, c.want)
		}
	}
}

// A key whose lock another transaction holds is skipped, without holding up
// other keys, and fires once the lock is released.
func TestKeyLockedElsewhere(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	due := time.Now().Add(-time.Second)
	schedule(t, pool, "ship", "busy", due)
	schedule(t, pool, "ship", "free", due)

	holder, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if err := outbox.LockKey(ctx, holder, "busy"); err != nil {
		t.Fatal(err)
	}
	w := newWorker(t, pool, map[string]timer.FireFunc{"ship": record("a")})
	testenv.Start(t, w.Run)
	waitFired(t, pool, "ship", "free")
	if tm := get(t, pool, "ship", "busy"); tm.State != timer.StatePending || tm.Attempts != 0 {
		t.Fatalf("busy timer = %s after %d attempts while its key is locked", tm.State, tm.Attempts)
	}

	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitFired(t, pool, "ship", "busy")
	if n := count(t, pool, "SELECT count(*) FROM effects WHERE key = 'busy'"); n != 1 {
		t.Errorf("busy timer fired %d times", n)
	}
}

func TestScheduleTwice(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	due := time.Now().Add(time.Hour).Truncate(time.Second)
	inTx(t, pool, func(tx pgx.Tx) error {
		for i, want := range []bool{true, false} {
			added, err := timer.Schedule(ctx, tx, "ship", "d", due.Add(time.Duration(i)*time.Minute), []byte{byte('a' + i)})
			if err != nil {
				return err
			}
			if added != want {
				t.Errorf("Schedule #%d = %v, want %v", i+1, added, want)
			}
		}
		return nil
	})
	if schedule(t, pool, "ship", "d", due) {
		t.Error("Schedule in a later transaction = true")
	}
	if !schedule(t, pool, "award", "d", due) {
		t.Error("Schedule of another kind for the same key = false")
	}
	tm := get(t, pool, "ship", "d")
	if !tm.DueAt.Equal(due) || string(tm.Payload) != "a" || tm.State != timer.StatePending {
		t.Errorf("timer = %+v, want the first Schedule's", tm)
	}
	if n := count(t, pool, "SELECT count(*) FROM timers WHERE kind = 'ship' AND key = 'd'"); n != 1 {
		t.Errorf("%d timers, want 1", n)
	}
}

// Timers of a kind without a FireFunc stay pending and do not hold up the
// others; done rows are pruned after the retention, pending ones are kept.
func TestUnhandledKindAndRetention(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	now := time.Now()
	schedule(t, pool, "mystery", "u", now.Add(-time.Second))
	schedule(t, pool, "ship", "later", now.Add(time.Hour))
	schedule(t, pool, "ship", "now", now)
	w := newWorker(t, pool, map[string]timer.FireFunc{"ship": record("a")}, func(c *timer.Config) {
		c.Retention = time.Second
	})
	testenv.Start(t, w.Run)

	testenv.WaitFor(t, wait, "the fired timer to be pruned", func() bool {
		_, err := timer.Get(context.Background(), pool, "ship", "now")
		return errors.Is(err, timer.ErrNotFound)
	})
	if n := count(t, pool, "SELECT count(*) FROM effects WHERE key = 'now'"); n != 1 {
		t.Errorf("fired %d times, want 1", n)
	}
	for _, k := range [][2]string{{"mystery", "u"}, {"ship", "later"}} {
		if tm := get(t, pool, k[0], k[1]); tm.State != timer.StatePending {
			t.Errorf("%s %s = %s, want pending", k[0], k[1], tm.State)
		}
	}
}

// A BatchFireFunc gets a kind's due timers together. A FireError
// reschedules the timer it names and fires the others without it in the
// same pass; a plain error fires each on its own; panics are errors.
func TestBatchFire(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	reg := prometheus.NewRegistry()
	var mu sync.Mutex
	var sizes []int
	badFailed, plainFailed := false, false
	batch := func(ctx context.Context, tx pgx.Tx, timers []timer.Timer) error {
		mu.Lock()
		sizes = append(sizes, len(timers))
		mu.Unlock()
		keys := make([]string, 0, len(timers))
		for i, tm := range timers {
			switch {
			case tm.Key == "bad" && tm.Attempts == 0:
				badFailed = true
				return &timer.FireError{Index: i, Err: errors.New("gateway down")}
			case tm.Key == "plain" && len(timers) > 1 && !plainFailed:
				plainFailed = true
				return errors.New("somewhere in the batch")
			}
			keys = append(keys, tm.Key)
		}
		_, err := tx.Exec(ctx, `INSERT INTO effects (kind, key, worker)
			SELECT 'ship', k, 'batch' FROM unnest($1::text[]) AS k`, keys)
		return err
	}
	w := newWorker(t, pool, nil, func(c *timer.Config) {
		c.FireBatch = map[string]timer.BatchFireFunc{"ship": batch}
		c.BaseBackoff = 50 * time.Millisecond
		c.Registerer = reg
	})
	due := time.Now().Add(-time.Second)
	keys := []string{"bad", "plain"}
	for i := range 20 {
		keys = append(keys, fmt.Sprintf("s-%02d", i))
	}
	for _, k := range keys {
		schedule(t, pool, "ship", k, due)
	}
	testenv.Start(t, w.Run)
	for _, k := range keys {
		waitFired(t, pool, "ship", k)
	}
	if n := count(t, pool, "SELECT count(*) FROM effects"); n != len(keys) {
		t.Errorf("%d effects for %d timers: failed batches not rolled back", n, len(keys))
	}
	if tm := get(t, pool, "ship", "bad"); tm.Attempts != 1 || !strings.Contains(tm.LastError, "gateway down") {
		t.Errorf("bad: attempts %d, last error %q; want 1, gateway down", tm.Attempts, tm.LastError)
	}
	if tm := get(t, pool, "ship", "plain"); tm.Attempts != 0 {
		t.Errorf("plain: attempts %d; want 0 (the batch's error was nobody's)", tm.Attempts)
	}
	mu.Lock()
	defer mu.Unlock()
	if !badFailed || !plainFailed || slices.Max(sizes) < 2 {
		t.Errorf("bad failed %v, plain failed %v, batch sizes %v: the test proves less than it says", badFailed, plainFailed, sizes)
	}
	if got := metric(t, reg, "orderflow_timers_fired_total", "kind", "ship", "result", "ok"); got != float64(len(keys)) {
		t.Errorf("fired ok = %v, want %d", got, len(keys))
	}
}
