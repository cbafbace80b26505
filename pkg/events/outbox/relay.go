package outbox

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/pkg/events/internal/clock"
	"github.com/orderflow/orderflow/pkg/events/outbox/internal/outboxdb"
	"github.com/orderflow/orderflow/pkg/events/retry"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// notifyChannel is the LISTEN/NOTIFY channel other instances use to wake the
// leader. Channels are per database, so every service has its own.
const notifyChannel = "orderflow_outbox"

// Wake-up timing. A NOTIFY is sent at most once per notifyEvery, outside any
// order transaction: a NOTIFY inside each transaction would serialize
// commits (docs/design.md "Hard parts"). The fallback poll starts at minPoll after
// activity and doubles up to Config.MaxPoll while idle.
const (
	notifyEvery      = 5 * time.Millisecond
	recheckAfterWake = 20 * time.Millisecond
	maxBackoff       = 5 * time.Second
)

var (
	errLeaseLost      = errors.New("relay lease lost")
	errSimulatedCrash = errors.New("simulated crash between ack and cursor update")
)

// ErrTxidsAhead is the cursor guard's error: the outbox's transaction ids
// are ahead of the server's, as after a restore into, or a move to, a
// cluster whose transaction counter is behind the old one. New rows would
// sort below the cursor and never be published, so the relay publishes
// nothing until an operator runs Rebase (orderflowctl outbox rebase).
var ErrTxidsAhead = errors.New("outbox transaction ids are ahead of this server's (restored or moved database?)")

// ErrNothingToRebase is Rebase's answer when the guard finds nothing wrong.
var ErrNothingToRebase = errors.New("outbox: transaction ids are not ahead of the server's; nothing to rebase")

// guardEvery is how often a leading relay checks the cursor guard; a
// tripped guard is checked every second until rebased.
const guardEvery = 5 * time.Second

// Run relays the outbox to Kafka until ctx is done, then returns nil. While
// another instance leads, it waits to take over; while it leads, it
// publishes batches and deletes rows past the retention.
func (o *Outbox) Run(ctx context.Context) error {
	// A client of its own for Ready, so readiness does not depend on
	// leadership; the producer is made anew for each leadership term.
	if o.cfg.Publisher == nil {
		pinger, err := kgo.NewClient(append(o.cfg.Kafka.Opts(), kgo.SeedBrokers(o.cfg.Brokers...))...)
		if err != nil {
			return fmt.Errorf("kafka client: %w", err)
		}
		o.pinger.Store(pinger)
		defer pinger.Close()
	}

	// The relay's own connections: behind a busy service pool, its batches
	// would queue with the requests and add their wait to every event.
	pcfg := o.pool.Config().Copy()
	pcfg.MaxConns, pcfg.MinConns = relayPoolSize, 0
	pcfg.ConnConfig.RuntimeParams["application_name"] = o.connName("relay")
	// Its writes are cursor moves and retention deletes: losing the last
	// ones in a server crash only re-publishes events (same eventIds) or
	// deletes later, so they need not wait for the WAL flush, and the next
	// batch starts sooner.
	pcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	rpool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("relay pool: %w", err)
	}
	defer rpool.Close()
	o.relayPool = rpool

	localWake := make(chan struct{}, 1)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return o.forwardCommits(ctx, localWake) })
	g.Go(func() error { return o.lead(ctx, localWake) })
	g.Go(func() error { return o.expire(ctx) })
	return g.Wait()
}

// Connections is how many PostgreSQL connections a relay holds beside the
// service's pool: its own pool of relayPoolSize and, while it leads or
// tries to, the lease connection.
const Connections = relayPoolSize + 1

// relayPoolSize is one: the leader's batches, guard checks and cursor
// moves run one after another; only a retention delete (every minute at
// most, in short batches) or a standby's NOTIFY would want a second, and
// waits for it instead.
const relayPoolSize = 1

// connName is the application_name of the relay's connections (part
// "relay", "relay-lease"): the service pool's with the part added, so
// pg_stat_activity tells them apart.
func (o *Outbox) connName(part string) string {
	base := o.pool.Config().ConnConfig.RuntimeParams["application_name"]
	if base == "" {
		base = "orderflow-" + o.cfg.Service
	}
	return base + "-" + part
}

// forwardCommits routes Committed signals: to this process's relay when it
// leads, otherwise as a debounced NOTIFY to the leader elsewhere.
func (o *Outbox) forwardCommits(ctx context.Context, localWake chan<- struct{}) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-o.committed:
		}
		if o.leader.Load() {
			select {
			case localWake <- struct{}{}:
			default:
			}
			continue
		}
		if _, err := o.relayPool.Exec(ctx, "SELECT pg_notify($1, '')", notifyChannel); err != nil && ctx.Err() == nil {
			o.log.Warn("notify relay leader", "err", err) // the leader's poll still finds the rows
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(notifyEvery):
		}
	}
}

// lead competes for the lease and publishes while holding it. Each term
// runs under a context cancelled when the lease is lost, with a producer of
// its own that is closed at the end of the term: a deposed leader's buffered
// records are dropped, not sent whenever the broker comes back.
func (o *Outbox) lead(ctx context.Context, localWake <-chan struct{}) error {
	for {
		l, err := o.acquire(ctx)
		if err != nil {
			return nil // ctx done
		}
		o.log.Info("relay is leader")
		err = o.term(ctx, l, localWake)
		l.release()
		if ctx.Err() != nil {
			return nil
		}
		o.log.Warn("relay stopped leading", "err", err)
		if !clock.Sleep(ctx, o.cfg.LeaseRetry) {
			return nil
		}
	}
}

// term publishes while l is held.
func (o *Outbox) term(ctx context.Context, l *lease, localWake <-chan struct{}) error {
	var p publisher = external{o.cfg.Publisher}
	if o.cfg.Publisher == nil {
		kp, err := newProducer(o.cfg.Brokers, o.kafka, o.cfg.Tracing != nil)
		if err != nil {
			return err
		}
		p = kp
	}
	defer p.close()
	// The batch in flight at shutdown runs under work, which only a lost
	// lease or the drain deadline cancels: cancelling its records midway
	// would fail the unsent ones while others of the batch, on other
	// partitions, were acked, and the next leader would publish those again.
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		defer cancel()
		select {
		case <-l.lost:
		case <-work.Done():
		case <-ctx.Done():
			select {
			case <-l.lost:
			case <-work.Done():
			case <-time.After(o.cfg.Drain):
			}
		}
	}()
	err := o.publishWhileLeader(ctx, work, p, l, localWake)
	if ctx.Err() == nil && work.Err() != nil {
		return errLeaseLost
	}
	return err
}

// lease is the relay's leadership: a session advisory lock held on a
// dedicated connection, which also LISTENs for wake-ups.
type lease struct {
	conn *pgx.Conn
	pid  uint32        // the lock-holding backend, to fence cursor updates
	wake chan struct{} // a NOTIFY arrived
	lost chan struct{} // closed when the connection, and so the lock, is gone
	stop context.CancelFunc
	done chan struct{}
}

// leaseKey names the lock: one per service database (advisory locks are
// scoped to a database), so leader election is per outbox.
func leaseKey() int64 {
	h := fnv.New64a()
	h.Write([]byte("orderflow.outbox.relay"))
	return int64(h.Sum64())
}

// acquire blocks until this instance holds the lease or ctx is done.
func (o *Outbox) acquire(ctx context.Context) (*lease, error) {
	for {
		l, err := o.tryAcquire(ctx)
		if l != nil {
			return l, nil
		}
		if err == nil {
			o.outage.Recovered() // the database answered; another instance leads
		}
		if err != nil && ctx.Err() == nil {
			o.log.Warn("relay lease", "err", err)
			if retry.Infrastructure(err) {
				o.outage.Failed(err)
			}
		}
		if !clock.Sleep(ctx, o.cfg.LeaseRetry) {
			return nil, ctx.Err()
		}
	}
}

func (o *Outbox) tryAcquire(ctx context.Context) (*lease, error) {
	cfg := o.pool.Config().ConnConfig.Copy()
	// If this host vanishes, the server must notice within seconds, end
	// the session and so free the lock; Linux's default keepalive takes two
	// hours.
	cfg.RuntimeParams["tcp_keepalives_idle"] = "2"
	cfg.RuntimeParams["tcp_keepalives_interval"] = "1"
	cfg.RuntimeParams["tcp_keepalives_count"] = "3"
	cfg.RuntimeParams["tcp_user_timeout"] = "5000"
	cfg.RuntimeParams["application_name"] = o.connName("relay-lease")
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", leaseKey()).Scan(&got); err != nil || !got {
		conn.Close(context.Background())
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("listen: %w", err)
	}
	wctx, stop := context.WithCancel(ctx)
	l := &lease{conn: conn, wake: make(chan struct{}, 1), lost: make(chan struct{}), stop: stop, done: make(chan struct{})}
	go l.watch(wctx)
	return l, nil
}

// watch forwards notifications and checks every second that the lease
// connection is alive; it closes lost when it is not.
func (l *lease) watch(ctx context.Context) {
	defer close(l.done)
	for {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := l.conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			select {
			case l.wake <- struct{}{}:
			default:
			}
		case pgconn.Timeout(err):
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = l.conn.Exec(pctx, "SELECT 1")
			cancel()
			if err != nil && ctx.Err() == nil {
				close(l.lost)
				return
			}
		default:
			close(l.lost)
			return
		}
	}
}

// release gives up the lease by closing its connection.
func (l *lease) release() {
	l.stop()
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.conn.Close(ctx)
}

// publishWhileLeader publishes batches until ctx is done or the lease is
// lost; each batch runs under work (see term).
func (o *Outbox) publishWhileLeader(ctx, work context.Context, p publisher, l *lease, localWake <-chan struct{}) error {
	o.leader.Store(true)
	defer o.leader.Store(false)
	poll, backoff, held := o.cfg.MinPoll, time.Duration(0), time.Duration(0)
	var guarded time.Time // the cursor guard's last check
	woken := false        // the last batch was read because of a wake-up
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-l.lost:
			return errLeaseLost
		case <-ctx.Done():
			return nil
		default:
		}
		if time.Since(guarded) >= guardEvery || o.guard.Load() != nil {
			if blocked := o.checkGuard(ctx); blocked {
				if !clock.Sleep(ctx, time.Second) {
					return nil
				}
				continue
			}
			guarded = time.Now()
		}
		n, err := o.publishBatch(work, p)
		if err != nil {
			if ctx.Err() != nil || work.Err() != nil {
				return nil
			}
			if retry.Infrastructure(err) {
				o.outage.Failed(err)
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), maxBackoff)
			o.log.Error("relay batch failed; will retry", "err", err, "retry_in", backoff)
			// Commits do not cut a backoff short: retrying a failing batch
			// on every order would only multiply duplicates.
			if !clock.Sleep(ctx, backoff) {
				return nil
			}
			continue
		} else {
			o.outage.Recovered()
			backoff = 0
			if n > 0 {
				poll, held = o.cfg.MinPoll, 0
				continue // more may be waiting
			}
			switch {
			case woken:
				// Something committed but is not visible to the relay yet,
				// or waits behind an older transaction: look again soon,
				// without a query per wake-up while commits keep coming.
				timer.Reset(min(poll, recheckAfterWake))
			case o.heldBack(ctx):
				// Committed rows wait for an older transaction to end; its
				// end wakes nobody, so keep looking, backing off.
				held = min(max(2*held, 5*time.Millisecond), 100*time.Millisecond)
				timer.Reset(held)
			default:
				held = 0
				timer.Reset(poll)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.lost:
			return errLeaseLost
		case <-localWake:
			poll, woken = o.cfg.MinPoll, true
		case <-l.wake:
			poll, woken = o.cfg.MinPoll, true
		case <-timer.C:
			woken = false
			if held == 0 {
				poll = min(2*poll, o.cfg.MaxPoll)
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// publishBatch publishes the next rows after the cursor and advances it
// past the acked ones. It returns how many rows it took.
func (o *Outbox) publishBatch(ctx context.Context, p publisher) (int, error) {
	q := outboxdb.New(o.relayPool)
	// The cursor is read with every batch, not kept: a replay may move it.
	rows, err := q.PendingBatch(ctx, int32(o.cfg.BatchSize))
	if err != nil {
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	o.polls.Add(1)
	if len(rows) == 0 {
		return 0, nil
	}
	acked, pubErr := p.publish(ctx, o.source, rows)
	if o.crashAfterAck != nil && acked > 0 && o.crashAfterAck() {
		return len(rows), errSimulatedCrash
	}
	if acked > 0 {
		// Advance even when ctx was cancelled after the acks: otherwise a
		// clean shutdown would re-publish them.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		last := rows[acked-1]
		moved, err := q.AdvanceCursor(mctx, outboxdb.AdvanceCursorParams{
			ToTxid: last.Txid, ToID: last.ID, FromTxid: last.CursorTxid, FromID: last.CursorID,
		})
		cancel()
		if err != nil {
			return len(rows), fmt.Errorf("advance outbox cursor past %d rows: %w", acked, err)
		}
		if moved == 0 {
			o.log.Info("outbox cursor not advanced: a replay or another leader moved it")
		}
		o.metrics.countPublished(rows[:acked])
		o.logSteps(ctx, rows[:acked])
	}
	return len(rows), pubErr
}

// heldBack reports whether committed rows wait behind a running
// transaction; on error it says no, and the normal poll takes over.
func (o *Outbox) heldBack(ctx context.Context) bool {
	held, err := outboxdb.New(o.relayPool).HeldBack(ctx)
	return err == nil && held
}

// expire deletes published rows older than the retention, in batches, while
// this instance leads.
func (o *Outbox) expire(ctx context.Context) error {
	every := min(o.cfg.Retention/10, time.Minute)
	for clock.Sleep(ctx, every) {
		if !o.leader.Load() {
			continue
		}
		n, err := DeleteExpired(ctx, o.relayPool, time.Now().Add(-o.cfg.Retention))
		if err != nil && ctx.Err() == nil {
			o.log.Warn("outbox retention", "err", err)
		} else if n > 0 {
			o.log.Info("outbox retention deleted published rows", "rows", n)
		}
	}
	return nil
}

// DeleteExpired deletes rows published and created before cutoff, in
// short batches (postgres.DeleteInBatches: a long delete would hold back
// every relay on the server), and returns how many.
func DeleteExpired(ctx context.Context, db outboxdb.DBTX, cutoff time.Time) (int64, error) {
	q := outboxdb.New(db)
	return postgres.DeleteInBatches(ctx, func(ctx context.Context, batch int32) (int64, error) {
		return q.DeleteExpired(ctx, outboxdb.DeleteExpiredParams{Cutoff: cutoff, BatchSize: batch})
	})
}

// Replay moves the cursor back to the first row created at or after since,
// so the relay re-publishes everything from there on (same eventIds, in
// their original order) for a consumer that joined late, and wakes the
// relay. It never moves the cursor forward. It returns how many rows are now
// waiting to be published.
func Replay(ctx context.Context, db outboxdb.DBTX, since time.Time) (int64, error) {
	q := outboxdb.New(db)
	first, err := q.FirstSince(ctx, since)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("replay: find first row since %s: %w", since.Format(time.RFC3339), err)
	}
	if _, err := q.RewindCursor(ctx, outboxdb.RewindCursorParams{ToTxid: first.Txid, ToID: first.ID - 1}); err != nil {
		return 0, fmt.Errorf("replay: rewind cursor: %w", err)
	}
	b, err := q.Backlog(ctx)
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	if _, err := db.Exec(ctx, "SELECT pg_notify($1, '')", notifyChannel); err != nil {
		return b.Pending, fmt.Errorf("wake relay: %w", err)
	}
	return b.Pending, nil
}

// Ready reports whether the outbox's database and broker answer.
func (o *Outbox) Ready(ctx context.Context) error {
	if err := o.pool.Ping(ctx); err != nil {
		return fmt.Errorf("outbox database: %w", err)
	}
	if err := o.guard.Load(); err != nil {
		return *err
	}
	if err := o.outage.Err(); err != nil {
		return err
	}
	if o.cfg.Publisher != nil {
		return o.cfg.Publisher.Ready(ctx)
	}
	cl := o.pinger.Load()
	if cl == nil {
		return errors.New("relay not running")
	}
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

// checkGuard runs the cursor guard (see ErrTxidsAhead) and reports whether
// it blocks publishing. A failed check blocks nothing: the batch that
// follows meets the same failure and retries it.
func (o *Outbox) checkGuard(ctx context.Context) (blocked bool) {
	g, err := outboxdb.New(o.relayPool).CursorGuard(ctx)
	if err != nil {
		return false
	}
	if !g.CursorAhead && !g.RowsAhead {
		if o.guard.Swap(nil) != nil {
			o.log.Info("outbox cursor guard cleared; publishing again")
		}
		return false
	}
	err = fmt.Errorf("%w: cursor at txid %s, rows ahead: %t, the server's next txid %s; nothing is published until "+
		"`orderflowctl outbox rebase --service %s` (see README)", ErrTxidsAhead, g.CursorTxid, g.RowsAhead, g.NextTxid, o.cfg.Service)
	if prev := o.guard.Swap(&err); prev == nil || time.Since(o.guardLogged) > time.Minute {
		o.guardLogged = time.Now()
		o.log.Error("outbox relay refuses to publish", "err", err)
	}
	return true
}

// Rebase renumbers the outbox after the cursor guard tripped (see
// ErrTxidsAhead), in one transaction: rows published before the move get
// txid 1 and the cursor goes past them; the rest, those the old cluster had
// not published and those written since, get txid 2, so the relay
// publishes them next in id order, which keeps each order's events in
// their order (one order's transactions draw ids in commit order, under
// its lock). A row written since the move whose id is not above every old
// one's (impossible while the id sequence came with the data) would be
// published again; consumers deduplicate by eventId. It returns how many
// rows now wait to be published, and refuses when the guard finds nothing
// wrong. Every row is updated: on a large outbox this is a long write
// transaction, holding back the server's other relays while it runs.
func Rebase(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}) (int64, error) {
	var pending int64
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		q := outboxdb.New(tx)
		if err := q.LockCursor(ctx); err != nil {
			return fmt.Errorf("lock cursor: %w", err)
		}
		g, err := q.CursorGuard(ctx)
		if err != nil {
			return fmt.Errorf("cursor guard: %w", err)
		}
		if !g.CursorAhead && !g.RowsAhead {
			return ErrNothingToRebase
		}
		if _, err := q.RebaseRows(ctx); err != nil {
			return fmt.Errorf("renumber rows: %w", err)
		}
		if err := q.RebaseCursor(ctx); err != nil {
			return fmt.Errorf("move cursor: %w", err)
		}
		b, err := q.Backlog(ctx)
		if err != nil {
			return err
		}
		pending = b.Pending
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, '')", notifyChannel)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNothingToRebase) {
			return 0, err
		}
		return 0, fmt.Errorf("outbox rebase: %w", err)
	}
	return pending, nil
}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Leader reports whether this instance's relay currently holds the lease.
func (o *Outbox) Leader() bool { return o.leader.Load() }

// Pending is the outbox's backlog: rows not yet published and the age of
// the oldest (0 when none), as orderflow_outbox_pending and
// orderflow_outbox_oldest_age_seconds report them.
func Pending(ctx context.Context, db outboxdb.DBTX) (int64, time.Duration, error) {
	b, err := outboxdb.New(db).Backlog(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("outbox backlog: %w", err)
	}
	return b.Pending, time.Duration(b.OldestAgeSeconds * float64(time.Second)), nil
}
