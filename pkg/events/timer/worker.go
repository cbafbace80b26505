package timer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/pkg/events/internal/clock"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/retry"
	"github.com/orderflow/orderflow/pkg/events/timer/internal/timerdb"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// FireFunc applies a timer's effect in tx, the transaction that marks the
// timer fired (a savepoint of the batch's transaction); events it writes
// with the outbox commit with it. The key's lock (outbox.LockKey) is
// already held. It must not commit or roll back tx. A returned error rolls
// back what it did in tx, and the timer is retried after a backoff.
type FireFunc func(ctx context.Context, tx pgx.Tx, t Timer) error

// BatchFireFunc fires many due timers of one kind at once in tx (a
// savepoint of the pass's transaction), every key's lock held, with
// set-based statements. It returns nil; or a *FireError naming the timer
// that failed: what it did is rolled back, that timer is rescheduled after
// a backoff as a failing FireFunc's would be, and the others are fired
// again without it; or any other error: each timer is then fired on its
// own, a batch of one, where every error is the timer's. Infrastructure
// errors (package retry) abort the pass as for a FireFunc.
type BatchFireFunc func(ctx context.Context, tx pgx.Tx, timers []Timer) error

// FireError is a BatchFireFunc's failure of timers[Index].
type FireError struct {
	Index int
	Err   error
}

func (e *FireError) Error() string { return fmt.Sprintf("timer %d of the batch: %v", e.Index, e.Err) }
func (e *FireError) Unwrap() error { return e.Err }

// Config configures one service's timer worker.
type Config struct {
	Service string        // for logs
	Pool    *pgxpool.Pool // the service's database, with Migrate applied

	// Fire holds the FireFunc of each kind. A due timer of a kind without
	// one is left pending and logged once.
	Fire map[string]FireFunc

	// FireBatch holds the BatchFireFunc of kinds fired a batch at a time;
	// a kind in both maps is fired by its BatchFireFunc.
	FireBatch map[string]BatchFireFunc

	// Batch is how many timers one transaction claims; default 100. Their
	// keys stay locked until it commits, so an order transaction on one of
	// them waits for the whole batch: keep FireFuncs short.
	Batch int

	MaxPoll     time.Duration // longest sleep between checks; default 1s
	BaseBackoff time.Duration // first retry delay after a failed Fire, doubling per failure up to a minute; default 1s
	Retention   time.Duration // fired and cancelled rows are kept this long, then pruned; default 7 days

	// AfterCommit, when set, is called after each transaction in which a
	// timer fired; services pass their outbox's Committed, so the events
	// the FireFuncs wrote are published now rather than at the relay's next
	// poll.
	AfterCommit func()

	// Registerer receives the timer metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.MaxPoll <= 0 {
		c.MaxPoll = time.Second
	}
	if c.BaseBackoff <= 0 {
		c.BaseBackoff = time.Second
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
}

// Validate reports the first missing required field.
func (c *Config) Validate() error {
	switch {
	case c.Service == "":
		return errors.New("timer: Service is required")
	case c.Pool == nil:
		return errors.New("timer: Pool is required")
	case len(c.Fire) == 0 && len(c.FireBatch) == 0:
		return errors.New("timer: Fire or FireBatch is required")
	}
	for kind, f := range c.Fire {
		if f == nil {
			return fmt.Errorf("timer: Fire[%q] is nil", kind)
		}
	}
	for kind, f := range c.FireBatch {
		if f == nil {
			return fmt.Errorf("timer: FireBatch[%q] is nil", kind)
		}
	}
	return nil
}

// Timing of the worker's loop.
const (
	maxBackoff = time.Minute           // ceiling of a failed timer's retry delay
	minBusy    = 10 * time.Millisecond // first wait when due timers were all busy
)

// Worker fires one service's due timers; see the package doc.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	kinds   []string // the kinds with a FireFunc
	kick    chan struct{}
	metrics *metrics
	outage  *retry.Outage // infrastructure failures being waited out
}

// New returns the worker for cfg.
func New(cfg Config, log *slog.Logger) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	w := &Worker{
		cfg:   cfg,
		log:   log.With("component", "timer", "service", cfg.Service),
		kinds: slices.Sorted(maps.Keys(kindsOf(cfg))),
		kick:  make(chan struct{}, 1),
	}
	w.metrics = newMetrics(w, cfg.Registerer)
	w.outage = retry.NewOutage("timer", cfg.Registerer)
	return w, nil
}

// Ready reports an infrastructure failure the worker is waiting out (see
// package retry), for /readyz.
func (w *Worker) Ready(context.Context) error { return w.outage.Err() }

// Kick wakes the worker for a check now. It never blocks; calls while a
// wake-up is pending coalesce. Call it after committing a Schedule whose
// due time may be sooner than the worker's current sleep.
func (w *Worker) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run fires due timers until ctx is done, then returns nil, once the
// transaction in hand has ended. It also prunes fired and cancelled rows
// past the retention.
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { w.fireLoop(ctx) })
	wg.Go(func() { w.housekeep(ctx) })
	wg.Wait()
	return nil
}

// fireLoop runs passes: at once again after a full batch, otherwise after
// sleeping until the next timer is due (at most MaxPoll) or a Kick. When
// due timers were left because their keys were busy, it looks again after
// a wait that starts at minBusy and doubles up to MaxPoll while nothing
// fires, so a key held for long costs a few cheap queries, not a hot loop.
func (w *Worker) fireLoop(ctx context.Context) {
	busy := minBusy
	streak := 0 // infrastructure failures in a row
	for {
		p, err := w.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		if p.done > 0 {
			busy = minBusy
		}
		if err == nil && p.done > 0 && p.selected == w.cfg.Batch {
			w.outage.Recovered()
			streak = 0
			continue
		}
		var wait time.Duration
		if err == nil {
			wait, err = w.untilNextDue(ctx)
		}
		if retry.Infrastructure(err) {
			// The database is away: nothing was fired or rescheduled, no
			// timer spent an attempt; try again with capped backoff.
			streak++
			if streak == 1 || streak%20 == 0 {
				w.log.Warn("infrastructure failure; waiting", "failures", streak, "err", err)
			}
			if !w.outage.Wait(ctx, streak, err) {
				return
			}
			continue
		}
		streak = 0
		w.outage.Recovered()
		if err != nil {
			w.log.Warn("timer pass", "err", err)
		}
		if err != nil || wait <= 0 {
			wait = busy
			busy = min(2*busy, w.cfg.MaxPoll)
		}
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-time.After(min(wait, w.cfg.MaxPoll)):
		}
	}
}

// untilNextDue is how long until the earliest pending timer is due, by the
// database's clock; MaxPoll when none is pending.
func (w *Worker) untilNextDue(ctx context.Context) (time.Duration, error) {
	s, err := timerdb.New(w.cfg.Pool).NextDue(ctx, w.kinds)
	if err != nil {
		return 0, fmt.Errorf("next due: %w", err)
	}
	if s >= w.cfg.MaxPoll.Seconds() || math.IsInf(s, 1) {
		return w.cfg.MaxPoll, nil
	}
	return time.Duration(s * float64(time.Second)), nil
}

// passResult is what one pass did.
type passResult struct {
	selected int // due timers read (step 1)
	done     int // timers fired or rescheduled
}

// outcome is one claimed timer's result, counted once the pass committed.
type outcome struct {
	kind  string
	fired bool
}

// pass claims and fires one batch in one transaction (see the package doc
// for the steps).
func (w *Worker) pass(ctx context.Context) (passResult, error) {
	var p passResult
	tx, err := w.cfg.Pool.Begin(ctx)
	if err != nil {
		return p, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	q := timerdb.New(tx)

	due, err := q.Due(ctx, timerdb.DueParams{Kinds: w.kinds, BatchSize: int32(w.cfg.Batch)})
	if err != nil {
		return p, fmt.Errorf("due timers: %w", err)
	}
	p.selected = len(due)
	if len(due) == 0 {
		return p, nil
	}

	// One statement tries every key's lock; a key another transaction
	// holds (an order transaction in progress) is skipped until a later
	// pass.
	keys := make([]string, 0, len(due))
	for _, d := range due {
		keys = append(keys, d.Key)
	}
	slices.Sort(keys)
	got, err := outbox.TryLockKeys(ctx, tx, slices.Compact(keys))
	if err != nil {
		return p, fmt.Errorf("lock timer keys: %w", err)
	}
	locked := make(map[string]bool, len(got))
	for _, k := range got {
		locked[k] = true
	}
	ids := make([]int64, 0, len(due))
	for _, d := range due {
		if locked[d.Key] {
			ids = append(ids, d.ID)
		}
	}
	if len(ids) == 0 {
		return p, nil
	}

	claimed, err := q.Claim(ctx, ids)
	if err != nil {
		return p, fmt.Errorf("claim timers: %w", err)
	}
	byKind := make(map[string][]Timer)
	var kinds []string // in the order of their first due timer
	for _, r := range claimed {
		t := Timer{
			ID: r.ID, Kind: r.Kind, Key: r.Key, DueAt: r.DueAt, Payload: r.Payload,
			Attempts: r.Attempts, State: StatePending,
		}
		if _, seen := byKind[t.Kind]; !seen {
			kinds = append(kinds, t.Kind)
		}
		byKind[t.Kind] = append(byKind[t.Kind], t)
	}
	outcomes := make([]outcome, 0, len(claimed))
	for _, kind := range kinds {
		timers := byKind[kind]
		if f := w.cfg.FireBatch[kind]; f != nil {
			fired, err := w.fireBatch(ctx, tx, f, timers)
			if err != nil {
				return p, err
			}
			for i := range timers {
				outcomes = append(outcomes, outcome{kind: kind, fired: fired[i]})
			}
			continue
		}
		for _, t := range timers {
			fired, err := w.fire(ctx, tx, t)
			if err != nil {
				return p, err
			}
			outcomes = append(outcomes, outcome{kind: t.Kind, fired: fired})
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return p, fmt.Errorf("commit: %w", err)
	}

	p.done = len(outcomes)
	anyFired := false
	for _, o := range outcomes {
		w.metrics.count(o.kind, o.fired)
		anyFired = anyFired || o.fired
	}
	if anyFired && w.cfg.AfterCommit != nil {
		w.cfg.AfterCommit()
	}
	return p, nil
}

// fire calls t's FireFunc in a savepoint of tx and marks t fired, or, when
// the call fails, rolls the savepoint back and reschedules t. It reports
// whether t fired; an error is the database's and spoils tx.
func (w *Worker) fire(ctx context.Context, tx pgx.Tx, t Timer) (bool, error) {
	return w.fireWith(ctx, tx, w.cfg.Fire[t.Kind], t)
}

// fireWith is fire with f as t's FireFunc.
func (w *Worker) fireWith(ctx context.Context, tx pgx.Tx, f FireFunc, t Timer) (bool, error) {
	sp, err := tx.Begin(ctx) // a savepoint
	if err != nil {
		return false, err
	}
	ferr := call(ctx, sp, f, t)
	if fe, ok := errors.AsType[*FireError](ferr); ok {
		ferr = fe.Err // alone, every error is the timer's
	}
	if ferr == nil {
		ferr = timerdb.New(sp).MarkFired(ctx, t.ID)
	}
	if ferr == nil {
		return true, sp.Commit(ctx)
	}
	if retry.Infrastructure(ferr) {
		// Not the timer's failure (a deadlock, a connection lost): the
		// whole pass rolls back and is tried again, and the timer keeps
		// its attempts and its due time.
		return false, fmt.Errorf("fire %s %s: %w", t.Kind, t.Key, ferr)
	}
	if err := sp.Rollback(ctx); err != nil {
		return false, fmt.Errorf("roll back %s %s: %w (after: %v)", t.Kind, t.Key, err, ferr)
	}
	return false, w.reschedule(ctx, tx, t, ferr)
}

// reschedule spends one of t's attempts on ferr and sets it due again
// after the backoff; an error is the database's and spoils tx.
func (w *Worker) reschedule(ctx context.Context, tx pgx.Tx, t Timer, ferr error) error {
	delay := backoff(w.cfg.BaseBackoff, t.Attempts+1)
	w.log.Warn("timer failed, retrying", "kind", t.Kind, "key", t.Key,
		"attempt", t.Attempts+1, "retry_in", delay, "err", ferr)
	err := timerdb.New(tx).Reschedule(ctx, timerdb.RescheduleParams{
		ID: t.ID, LastError: ferr.Error(), DelaySeconds: delay.Seconds(),
	})
	if err != nil {
		return fmt.Errorf("reschedule %s %s: %w", t.Kind, t.Key, err)
	}
	return nil
}

// kindsOf is the set of kinds cfg fires.
func kindsOf(cfg Config) map[string]bool {
	kinds := make(map[string]bool, len(cfg.Fire)+len(cfg.FireBatch))
	for k := range cfg.Fire {
		kinds[k] = true
	}
	for k := range cfg.FireBatch {
		kinds[k] = true
	}
	return kinds
}

// fireBatch fires timers, all of one kind, with f in savepoints of tx (see
// BatchFireFunc) and marks those that fired in one statement. It reports
// which fired; an error is the database's and spoils tx.
func (w *Worker) fireBatch(ctx context.Context, tx pgx.Tx, f BatchFireFunc, timers []Timer) ([]bool, error) {
	fired := make([]bool, len(timers))
	todo := make([]int, len(timers)) // indexes into timers still to fire
	for i := range todo {
		todo[i] = i
	}
	for len(todo) > 0 {
		batch := make([]Timer, len(todo))
		for j, i := range todo {
			batch[j] = timers[i]
		}
		sp, err := tx.Begin(ctx) // a savepoint
		if err != nil {
			return nil, err
		}
		ferr := callBatch(ctx, sp, f, batch)
		if ferr == nil {
			ids := make([]int64, len(batch))
			for j, t := range batch {
				ids[j] = t.ID
			}
			if err := timerdb.New(sp).MarkAllFired(ctx, ids); err != nil {
				return nil, fmt.Errorf("mark %d %s timers fired: %w", len(ids), batch[0].Kind, err)
			}
			if err := sp.Commit(ctx); err != nil {
				return nil, err
			}
			for _, i := range todo {
				fired[i] = true
			}
			return fired, nil
		}
		if retry.Infrastructure(ferr) {
			return nil, fmt.Errorf("fire %d %s timers: %w", len(batch), batch[0].Kind, ferr)
		}
		if err := sp.Rollback(ctx); err != nil {
			return nil, fmt.Errorf("roll back %d %s timers: %w (after: %v)", len(batch), batch[0].Kind, err, ferr)
		}
		fe, ok := errors.AsType[*FireError](ferr)
		if !ok || fe.Index < 0 || fe.Index >= len(batch) {
			// Which timer failed is unknown: each on its own.
			for _, i := range todo {
				one := func(ctx context.Context, tx pgx.Tx, t Timer) error { return f(ctx, tx, []Timer{t}) }
				if fired[i], err = w.fireWith(ctx, tx, one, timers[i]); err != nil {
					return nil, err
				}
			}
			return fired, nil
		}
		if err := w.reschedule(ctx, tx, batch[fe.Index], fe.Err); err != nil {
			return nil, err
		}
		todo = slices.Delete(todo, fe.Index, fe.Index+1)
	}
	return fired, nil
}

// callBatch is call for a BatchFireFunc.
func callBatch(ctx context.Context, tx pgx.Tx, f BatchFireFunc, timers []Timer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("fire panic: %v", p)
		}
	}()
	return f(ctx, tx, timers)
}

// call runs f, turning a panic into an error so one bad timer cannot stop
// the worker.
func call(ctx context.Context, tx pgx.Tx, f FireFunc, t Timer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("fire panic: %v", p)
		}
	}()
	return f(ctx, tx, t)
}

// backoff is the delay after the given failed attempt: base * 2^(attempt-1),
// capped at maxBackoff (or base, when larger), with its upper half
// jittered so that timers failing together spread out and none is retried
// sooner than half its delay.
func backoff(base time.Duration, attempt int32) time.Duration {
	ceiling := base << min(attempt-1, 30)
	if ceiling <= 0 || ceiling > maxBackoff {
		ceiling = max(maxBackoff, base)
	}
	return ceiling/2 + rand.N(ceiling/2+1)
}

// housekeep prunes fired and cancelled rows past the retention and logs
// due timers nobody here can fire, at start and then every Retention/10,
// at most a minute apart.
func (w *Worker) housekeep(ctx context.Context) {
	every := min(w.cfg.Retention/10, time.Minute)
	logged := make(map[string]bool) // kinds already logged
	for {
		w.reportUnhandled(ctx, logged)
		n, err := w.prune(ctx, time.Now().Add(-w.cfg.Retention))
		if err != nil && ctx.Err() == nil {
			w.log.Warn("timer retention", "err", err)
		} else if n > 0 {
			w.log.Info("timer retention deleted done timers", "rows", n)
		}
		if !clock.Sleep(ctx, every) {
			return
		}
	}
}

// reportUnhandled logs, once per kind, due timers of kinds without a
// FireFunc: they stay pending until a worker that has one runs.
func (w *Worker) reportUnhandled(ctx context.Context, logged map[string]bool) {
	kinds, err := timerdb.New(w.cfg.Pool).Unhandled(ctx, w.kinds)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("timer kinds without a FireFunc", "err", err)
		}
		return
	}
	for _, k := range kinds {
		if !logged[k] {
			logged[k] = true
			w.log.Warn("due timers of a kind without a FireFunc are left pending", "kind", k)
		}
	}
}

// prune deletes fired and cancelled rows done before cutoff, in short
// batches (postgres.DeleteInBatches), and returns how many.
func (w *Worker) prune(ctx context.Context, cutoff time.Time) (int64, error) {
	q := timerdb.New(w.cfg.Pool)
	return postgres.DeleteInBatches(ctx, func(ctx context.Context, batch int32) (int64, error) {
		return q.Prune(ctx, timerdb.PruneParams{Cutoff: cutoff, BatchSize: batch})
	})
}
