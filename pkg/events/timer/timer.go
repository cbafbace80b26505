// Package timer keeps durable timers in a service's own database: Schedule
// adds one inside the caller's transaction, and a Worker fires it once it is
// due by calling the FireFunc registered for its kind in a transaction that
// also marks it fired, so the timer's effect, the events it writes to the
// outbox and the fired mark commit together. A timer is identified by
// (kind, key); the key is the orderId.
//
// How a worker claims timers, one batch per transaction: it reads up to
// Batch due timers without locking them, takes each key's lock with
// outbox.TryLockKey, skipping keys another transaction holds, then locks
// the rows of the keys it got (FOR UPDATE SKIP LOCKED, re-checking that they
// are still pending and due). Taking the key's lock before the first row
// lock is what the outbox's per-order ordering needs, and the try-lock means
// a worker never waits on an order transaction or on another worker. Each
// timer's FireFunc runs in a savepoint: when it fails, only its own work is
// rolled back and the timer is rescheduled after an exponential backoff with
// jitter (at most a minute), so a failing timer neither blocks the others in
// its batch nor is retried in a hot loop. A failure of the infrastructure
// instead (the database away, a deadlock or serialization failure: package
// retry) is not the timer's: the whole pass rolls back, no timer spends an
// attempt or is pushed back, and the pass is tried again with capped backoff
// while Ready reports the wait.
//
// Guarantees:
//   - A timer fires at most once: its FireFunc's work commits at most once,
//     also with several workers on one database (the row lock and the
//     pending check under it), across crashes (the fired mark commits with
//     the work) and across retries (a failed call leaves nothing behind).
//   - A due timer is not lost: it stays pending across restarts and crashes
//     and fires, at or after its due time, once a worker with a FireFunc for
//     its kind runs and its key is free.
//   - Cancel and the firing of the same timer serialize on the key's lock:
//     Cancel reports true only when the timer will never fire, false when
//     it fired (or was cancelled, or never scheduled).
//   - Schedule is idempotent per (kind, key) for as long as the row is kept:
//     while pending, and Retention after it fired or was cancelled.
//
// Not guaranteed: firing exactly at the due time. A worker sleeps until the
// earliest due timer, at most MaxPoll; a timer scheduled sooner than that
// in another process (Kick only wakes its own process's worker) can fire up
// to MaxPoll late, a busy key delays its timers until the key is free, and
// a failed call delays its timer by the backoff. So timers fire in due order
// only roughly, and not at all across keys. A timer of a kind no running
// worker has a FireFunc for stays pending (the worker logs it once).
package timer

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/events/timer/internal/timerdb"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// The states of a timer.
const (
	StatePending   = "pending"
	StateFired     = "fired"
	StateCancelled = "cancelled"
)

// ErrNotFound is returned by Get for a timer that was never scheduled (or
// was pruned).
var ErrNotFound = errors.New("timer not found")

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or updates the timers table in the pool's database. Its
// version history ("goose_timer") is kept apart from the service's own
// migrations, the outbox's and the inbox's.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	return postgres.Migrate(ctx, pool, sub, "goose_timer")
}

// Timer is one durable timer.
type Timer struct {
	ID        int64
	Kind      string // selects the FireFunc
	Key       string // the orderId
	DueAt     time.Time
	Payload   []byte
	Attempts  int32  // earlier FireFunc calls that failed
	State     string // StatePending, StateFired or StateCancelled; set by Get
	LastError string // of the last failed call; set by Get
}

// Schedule adds a pending timer (kind, key) due at due, in tx, and reports
// whether it did: a second Schedule of the same kind and key changes
// nothing and returns false, whether the first is pending, fired or
// cancelled. Commit, then call the Worker's Kick when due may be sooner
// than its next check.
func Schedule(ctx context.Context, tx pgx.Tx, kind, key string, due time.Time, payload []byte) (bool, error) {
	n, err := timerdb.New(tx).Schedule(ctx, timerdb.ScheduleParams{
		Kind: kind, Key: key, DueAt: due, Payload: payload,
	})
	if err != nil {
		return false, fmt.Errorf("timer: schedule %s %s: %w", kind, key, err)
	}
	return n == 1, nil
}

// Cancel marks the pending timer (kind, key) cancelled in tx and reports
// whether there was one; false when it already fired, was cancelled or was
// never scheduled. Callers hold the key's lock (outbox.LockKey(key)) first,
// as for any write of the order, so a Cancel and a firing of the same timer
// serialize: Cancel waits for a firing in progress and then reports false.
func Cancel(ctx context.Context, tx pgx.Tx, kind, key string) (bool, error) {
	n, err := timerdb.New(tx).Cancel(ctx, timerdb.CancelParams{Kind: kind, Key: key})
	if err != nil {
		return false, fmt.Errorf("timer: cancel %s %s: %w", kind, key, err)
	}
	return n == 1, nil
}

// Entry is one timer for ScheduleAll.
type Entry struct {
	Kind, Key string
	Due       time.Time
	Payload   []byte
}

// ScheduleAll is Schedule for many timers in one statement, in tx:
// scheduled[i] reports whether entries[i] was new.
func ScheduleAll(ctx context.Context, tx pgx.Tx, entries []Entry) (scheduled []bool, err error) {
	if len(entries) == 0 {
		return nil, nil
	}
	p := timerdb.ScheduleAllParams{
		Kinds: make([]string, len(entries)), Keys: make([]string, len(entries)),
		DueAts: make([]time.Time, len(entries)), Payloads: make([][]byte, len(entries)),
	}
	for i, e := range entries {
		p.Kinds[i], p.Keys[i], p.DueAts[i], p.Payloads[i] = e.Kind, e.Key, e.Due, e.Payload
	}
	rows, err := timerdb.New(tx).ScheduleAll(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("timer: schedule %d timers: %w", len(entries), err)
	}
	type kindKey struct{ kind, key string }
	added := make(map[kindKey]bool, len(rows))
	for _, r := range rows {
		added[kindKey{r.Kind, r.Key}] = true
	}
	scheduled = make([]bool, len(entries))
	for i, e := range entries {
		k := kindKey{e.Kind, e.Key}
		scheduled[i] = added[k]
		delete(added, k) // a repeat is not new
	}
	return scheduled, nil
}

// CancelAll is Cancel for many keys of one kind in one statement:
// cancelled[i] reports whether keys[i] had a pending timer (a key given
// twice is reported the first time only). Callers hold the keys' locks.
func CancelAll(ctx context.Context, tx pgx.Tx, kind string, keys []string) (cancelled []bool, err error) {
	if len(keys) == 0 {
		return nil, nil
	}
	got, err := timerdb.New(tx).CancelAll(ctx, timerdb.CancelAllParams{Kind: kind, Keys: keys})
	if err != nil {
		return nil, fmt.Errorf("timer: cancel %d %s timers: %w", len(keys), kind, err)
	}
	hit := make(map[string]bool, len(got))
	for _, k := range got {
		hit[k] = true
	}
	cancelled = make([]bool, len(keys))
	for i, k := range keys {
		cancelled[i] = hit[k]
		delete(hit, k)
	}
	return cancelled, nil
}

// Get returns the timer (kind, key) with its state, or ErrNotFound. db is a
// pool or a transaction.
func Get(ctx context.Context, db timerdb.DBTX, kind, key string) (Timer, error) {
	r, err := timerdb.New(db).Get(ctx, timerdb.GetParams{Kind: kind, Key: key})
	if errors.Is(err, pgx.ErrNoRows) {
		return Timer{}, fmt.Errorf("timer: %s %s: %w", kind, key, ErrNotFound)
	}
	if err != nil {
		return Timer{}, fmt.Errorf("timer: get %s %s: %w", kind, key, err)
	}
	return Timer{
		ID: r.ID, Kind: r.Kind, Key: r.Key, DueAt: r.DueAt, Payload: r.Payload,
		Attempts: r.Attempts, State: r.State, LastError: r.LastError,
	}, nil
}
