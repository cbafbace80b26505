package outbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/postgres"
)

type bundle struct {
	pool   *pgxpool.Pool
	broker *kafkatest.Broker
	log    *slog.Logger
}

func setup(t *testing.T) *bundle {
	t.Helper()
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return &bundle{pool: pool, broker: kafkatest.Start(t), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func (b *bundle) newOutbox(t *testing.T, mod func(*outbox.Config)) *outbox.Outbox {
	cfg := outbox.Config{Service: "orders", Brokers: b.broker.Addrs, LeaseRetry: 200 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	return outbox.New(b.pool, cfg, b.log)
}

// startRelay runs o's relay until halted or the test ends.
func startRelay(t *testing.T, o *outbox.Outbox) *testenv.Running {
	return testenv.Start(t, o.Run)
}

func placed(orderID string) *contract.OrderPlaced {
	return &contract.OrderPlaced{
		Envelope:   contract.Envelope{OrderID: orderID},
		CustomerID: "c-1", Email: "ada@example.com",
		Items:      []contract.Item{{SKU: "sku-1", Quantity: 2, UnitPriceCents: 500}},
		TotalCents: 1000, Currency: "EUR", PaymentToken: "tok_visa",
	}
}

func cancelled(orderID string) *contract.OrderCancelled {
	return &contract.OrderCancelled{Envelope: contract.Envelope{OrderID: orderID}, Reason: "customer_request"}
}

// write commits events in one transaction and returns their ids, or nil
// after reporting an error (it may run on a goroutine other than the test's).
func write(t testing.TB, ctx context.Context, pool *pgxpool.Pool, o *outbox.Outbox, events ...contract.Event) []string {
	t.Helper()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return o.Write(ctx, tx, events...) })
	if err != nil {
		t.Errorf("write: %v", err)
		return nil
	}
	o.Committed()
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.Meta().EventID
	}
	return ids
}

// pending counts rows the relay has not published (after its cursor).
func pending(t testing.TB, pool *pgxpool.Pool) int {
	t.Helper()
	return count(t, pool, "(txid, id) > (SELECT c.txid, c.id FROM outbox_cursor c)")
}

func count(t testing.TB, pool *pgxpool.Pool, where string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM outbox WHERE "+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// consumer reads the orders topic from the start and keeps the records of
// the orders the test cares about (a real cluster may hold other tests').
type consumer struct {
	mu      sync.Mutex
	byOrder map[string][]*kgo.Record
	total   int
}

func consume(t *testing.T, addrs []string, orders map[string]bool) *consumer {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(contract.TopicOrders),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{byOrder: map[string][]*kgo.Record{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			c.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				if orders[string(r.Key)] {
					c.byOrder[string(r.Key)] = append(c.byOrder[string(r.Key)], r)
					c.total++
				}
			})
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return c
}

// distinct is how many distinct event ids arrived.
func (c *consumer) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, rs := range c.byOrder {
		for _, r := range rs {
			seen[header(r, "ce_id")] = true
		}
	}
	return len(seen)
}

// waitDistinct waits until n distinct event ids arrived.
func (c *consumer) waitDistinct(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := c.distinct()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer saw %d distinct events, want %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkOrder asserts that, per order, the first delivery of each event id
// follows the expected sequence exactly: nothing missing, nothing reordered.
// It returns how many duplicate deliveries it saw.
func (c *consumer) checkOrder(t *testing.T, want map[string][]string) (dups int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for order, ids := range want {
		var got []string
		seen := map[string]bool{}
		for _, r := range c.byOrder[order] {
			id := header(r, "ce_id")
			if seen[id] {
				dups++
				continue
			}
			seen[id] = true
			got = append(got, id)
		}
		if fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Fatalf("order %s: events arrived as\n%v\nwant\n%v", order, got, ids)
		}
	}
	return dups
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestRelayPublishesWithHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.newOutbox(t, nil)
	ctx := correlation.WithID(context.Background(), "corr-123")
	orderID := uuid.NewString()
	ids := write(t, ctx, b.pool, o, placed(orderID))

	c := consume(t, b.broker.Addrs, map[string]bool{orderID: true})
	startRelay(t, o)
	c.waitDistinct(t, 1)
	c.mu.Lock()
	r := c.byOrder[orderID][0]
	c.mu.Unlock()
	want := map[string]string{
		"ce_specversion": "1.0", "ce_id": ids[0], "ce_type": "OrderPlaced", "ce_source": "orderflow/orders",
		"content-type": "application/json", "x-correlation-id": "corr-123",
	}
	for k, v := range want {
		if got := header(r, k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, header(r, "ce_time")); err != nil {
		t.Errorf("ce_time: %v", err)
	}
	if string(r.Key) != orderID {
		t.Errorf("key = %q, want the orderId", r.Key)
	}
	if err := contract.Validate("OrderPlaced", 1, r.Value); err != nil {
		t.Errorf("published value fails its schema: %v", err)
	}
	waitFor(t, "row marked published", func() bool { return pending(t, b.pool) == 0 })
}

func TestWriteRejectsInvalidEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.newOutbox(t, nil)
	ctx := context.Background()
	bad := placed(uuid.NewString())
	bad.Currency = "euro"
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		return o.Write(ctx, tx, placed(uuid.NewString()), bad)
	})
	if err == nil {
		t.Fatal("Write accepted an event that fails its schema")
	}
	if n := count(t, b.pool, "true"); n != 0 {
		t.Fatalf("outbox has %d rows after a rejected write, want 0", n)
	}
}

// Three relays on one outbox, the leader killed halfway: every event of 100
// orders arrives, in per-order order.
func TestThreeRelaysKeepPerOrderOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const orders, perOrder = 100, 100
	ctx := context.Background()
	want := map[string][]string{}
	keys := map[string]bool{}
	var orderIDs []string
	for range orders {
		id := uuid.NewString()
		orderIDs = append(orderIDs, id)
		keys[id] = true
	}
	c := consume(t, b.broker.Addrs, keys)

	outboxes := make([]*outbox.Outbox, 3)
	relays := make([]*testenv.Running, 3)
	for i := range outboxes {
		outboxes[i] = b.newOutbox(t, func(c *outbox.Config) { c.BatchSize = 500 })
		relays[i] = startRelay(t, outboxes[i])
	}

	// Writers: each owns some orders and writes their events one
	// transaction at a time, through all three outboxes.
	var mu sync.Mutex
	var wg sync.WaitGroup
	var written atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range perOrder {
				for i := w; i < orders; i += 4 {
					o := outboxes[(i+seq)%3]
					ids := write(t, ctx, b.pool, o, cancelled(orderIDs[i]))
					if ids == nil {
						return
					}
					mu.Lock()
					want[orderIDs[i]] = append(want[orderIDs[i]], ids[0])
					mu.Unlock()
					written.Add(1)
				}
			}
		}()
	}
	// Kill whichever relay leads once a third is written; another must
	// take over.
	waitFor(t, "a third written", func() bool { return written.Load() > orders*perOrder/3 })
	killed := false
	for i, o := range outboxes {
		if o.Leader() {
			relays[i].Halt(t)
			killed = true
			break
		}
	}
	if !killed {
		t.Fatal("no relay was leading")
	}
	wg.Wait()
	c.waitDistinct(t, orders*perOrder)
	dups := c.checkOrder(t, want)
	t.Logf("%d events, %d duplicate deliveries", orders*perOrder, dups)
	waitFor(t, "all rows marked", func() bool { return pending(t, b.pool) == 0 })
}

// The broker refuses every produce while orders keep coming: writes still
// succeed, nothing is marked, and the backlog drains in order afterwards.
func TestBrokerDownThenRecovers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if b.broker.Embedded == nil {
		t.Skip("needs the embedded broker to inject faults")
	}
	fault := b.broker.Embedded.Cluster().Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: -1,
	})
	o := b.newOutbox(t, nil)
	startRelay(t, o)
	ctx := context.Background()
	orderID := uuid.NewString()
	var want []string
	for i := range 50 {
		if i == 0 {
			want = append(want, write(t, ctx, b.pool, o, placed(orderID))...)
			continue
		}
		want = append(want, write(t, ctx, b.pool, o, cancelled(orderID))...)
	}
	waitFor(t, "the relay to try and fail", func() bool { return fault.Hits() > 3 })
	if n := pending(t, b.pool); n != len(want) {
		t.Fatalf("%d rows pending while the broker refused them, want all %d", n, len(want))
	}
	fault.Remove()
	c := consume(t, b.broker.Addrs, map[string]bool{orderID: true})
	c.waitDistinct(t, len(want))
	c.checkOrder(t, map[string][]string{orderID: want})
	waitFor(t, "backlog drained", func() bool { return pending(t, b.pool) == 0 })
}

// The relay dies after the broker acked a batch and before marking it: the
// next relay re-publishes the same event ids; nothing is lost.
func TestCrashBetweenAckAndMark(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.newOutbox(t, nil)
	ctx := context.Background()
	orderID := uuid.NewString()
	want := write(t, ctx, b.pool, o, placed(orderID), cancelled(orderID))

	first := startRelayWithHook(t, o)
	<-first.crashed
	first.Halt(t)
	if n := pending(t, b.pool); n != 2 {
		t.Fatalf("%d rows pending, want 2: the relay died before advancing its cursor", n)
	}
	startRelay(t, b.newOutbox(t, nil))
	c := consume(t, b.broker.Addrs, map[string]bool{orderID: true})
	waitFor(t, "all rows marked", func() bool { return pending(t, b.pool) == 0 })
	waitFor(t, "both copies of the batch", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.total >= 4
	})
	if dups := c.checkOrder(t, map[string][]string{orderID: want}); dups != 2 {
		t.Errorf("got %d duplicate deliveries, want 2 (the batch re-published once)", dups)
	}
}

// A relay stopped cleanly while the broker is slow to ack its batch lets
// the batch finish and advances the cursor past it: the next relay
// publishes none of it again. (Cut short, the stop would leave the batch,
// or the part of it after a record it failed, to be published twice.)
func TestCleanStopFinishesTheBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if b.broker.Embedded == nil {
		t.Skip("needs the embedded broker to hold a produce")
	}
	// A drain far longer than the hold, so a loaded machine cannot cut
	// the batch short after the hold ends.
	o := b.newOutbox(t, func(c *outbox.Config) { c.Drain = 30 * time.Second })
	ctx := context.Background()
	want := map[string][]string{}
	keys := map[string]bool{}
	for range 50 {
		id := uuid.NewString()
		keys[id] = true
		want[id] = write(t, ctx, b.pool, o, placed(id), cancelled(id))
	}
	c := consume(t, b.broker.Addrs, keys)

	// The first produce waits longer than a publish cut short would wait
	// for its acks (2 s), and less than the relay's drain.
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	cluster := b.broker.Embedded.Cluster()
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		once.Do(func() {
			close(held)
			cluster.SleepControl(func() { <-release })
		})
		return nil, nil, false
	})
	first := startRelay(t, o)
	<-held
	time.AfterFunc(3*time.Second, func() { close(release) })
	first.Halt(t)
	// Every record that reached the broker is behind the cursor. (Not
	// every row need have been in the batch: a transaction running
	// elsewhere on the server may have held some back.)
	pend := pending(t, b.pool)
	if pend == 100 {
		t.Fatal("100 of 100 rows pending after a clean stop: the batch in flight was cut short")
	}
	c.waitDistinct(t, 100-pend)
	time.Sleep(500 * time.Millisecond) // a record beyond the cursor would arrive by now
	if got := c.distinct(); got != 100-pend {
		t.Fatalf("%d records on the broker but the cursor is past %d rows: the next relay would publish the rest again", got, 100-pend)
	}

	startRelay(t, b.newOutbox(t, nil))
	c.waitDistinct(t, 100)
	time.Sleep(500 * time.Millisecond) // a re-publish would arrive by now
	if dups := c.checkOrder(t, want); dups != 0 {
		t.Errorf("%d duplicate deliveries after a clean stop, want 0", dups)
	}
}

type hookedRelay struct {
	*testenv.Running
	crashed chan struct{}
}

func startRelayWithHook(t *testing.T, o *outbox.Outbox) *hookedRelay {
	h := &hookedRelay{crashed: make(chan struct{})}
	started := make(chan struct{})
	var once sync.Once
	outbox.SetCrashAfterAck(o, func() bool {
		<-started
		once.Do(func() { close(h.crashed) })
		h.Stop() // the process is gone: it will never advance the cursor
		return true
	})
	h.Running = startRelay(t, o)
	close(started)
	return h
}

// A transaction that drew a lower id and xid but commits after a later one
// is neither skipped nor overtaken: the relay holds rows back while an older
// transaction is still open, then publishes both in transaction order.
func TestLateCommitIsNotSkipped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.newOutbox(t, nil)
	startRelay(t, o)
	ctx := context.Background()
	// One order: both events land in one partition, so their order shows.
	orderID := uuid.NewString()
	c := consume(t, b.broker.Addrs, map[string]bool{orderID: true})

	late, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	lateEvent := placed(orderID)
	if err := o.Write(ctx, late, lateEvent); err != nil {
		t.Fatal(err)
	}
	early := write(t, ctx, b.pool, o, cancelled(orderID))
	// Let the relay look at least twice while the late transaction is open.
	polls := outbox.Polls(o)
	waitFor(t, "relay polls", func() bool { return outbox.Polls(o) >= polls+2 })
	if n := pending(t, b.pool); n != 1 { // the late row is not visible yet
		t.Fatalf("%d committed rows pending while an older transaction was open, want 1", n)
	}

	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	o.Committed()
	c.waitDistinct(t, 2)
	waitFor(t, "both published", func() bool { return pending(t, b.pool) == 0 })
	// Transaction order: the late transaction wrote first.
	c.checkOrder(t, map[string][]string{orderID: {lateEvent.EventID, early[0]}})
}

// A transaction left open in another database cannot write this outbox,
// so it does not hold the relay back (the server-wide pg_snapshot_xmin
// would); one open in the same database does (TestLateCommitIsNotSkipped).
func TestOtherDatabasesDoNotHoldBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.newOutbox(t, nil)
	startRelay(t, o)
	ctx := context.Background()

	other := pgtest.NewPool(t)
	xid := openTransaction(t, other)

	orderID := uuid.NewString()
	c := consume(t, b.broker.Addrs, map[string]bool{orderID: true})
	write(t, ctx, b.pool, o, placed(orderID))
	c.waitDistinct(t, 1)
	var open bool
	if err := other.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_xid::text = ($1::xid8)::xid::text)", xid).Scan(&open); err != nil || !open {
		t.Fatalf("the foreign transaction %s ended before the event was published (err %v)", xid, err)
	}
}

// openTransaction begins a transaction on pool that holds a transaction
// id until t ends, and returns the id.
func openTransaction(t *testing.T, pool *pgxpool.Pool) (xid string) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	return xid
}

// The same as a service's role (postgres.Bootstrap), no superuser and
// without pg_read_all_stats: the horizon still sees that the open
// transaction is in another database (pg_stat_activity shows every role
// each session's database and transaction id), while the statement
// texts of others' sessions stay hidden from it.
func TestOtherDatabasesDoNotHoldBackARole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner := pgtest.NewOwner(t)
	cfg, err := pgxpool.ParseConfig(pgtest.OwnerURL(t, owner))
	if err != nil {
		t.Fatal(err)
	}
	postgres.RegisterTypes(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := outbox.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	b := &bundle{pool: pool, broker: kafkatest.Start(t), log: slog.New(slog.DiscardHandler)}
	o := b.newOutbox(t, nil)
	startRelay(t, o)

	xid := openTransaction(t, pgtest.NewPool(t)) // in another database, as the superuser

	orderID := uuid.NewString()
	c := consume(t, b.broker.Addrs, map[string]bool{orderID: true})
	write(t, ctx, pool, o, placed(orderID))
	c.waitDistinct(t, 1)
	var query string
	err = pool.QueryRow(ctx, "SELECT query FROM pg_stat_activity WHERE backend_xid::text = ($1::xid8)::xid::text", xid).Scan(&query)
	if err != nil {
		t.Fatalf("the foreign transaction %s, as the role sees it: %v", xid, err)
	}
	if query != "<insufficient privilege>" {
		t.Errorf("the role reads another session's statement: %q", query)
	}
}

// With polling effectively off, a commit in another instance still reaches
// the leader through the debounced NOTIFY.
func TestWakeUpAcrossInstances(t *testing.T) {
	t.Parallel()
	b := setup(t)
	noPoll := func(c *outbox.Config) { c.MinPoll, c.MaxPoll = time.Hour, time.Hour }
	leader := b.newOutbox(t, noPoll)
	startRelay(t, leader)
	waitFor(t, "leader elected", leader.Leader)
	waitFor(t, "the leader's first, empty poll", func() bool { return outbox.Polls(leader) >= 1 })
	follower := b.newOutbox(t, noPoll)
	startRelay(t, follower)

	orderID := uuid.NewString()
	c := consume(t, b.broker.Addrs, map[string]bool{orderID: true})
	write(t, context.Background(), b.pool, follower, placed(orderID))
	c.waitDistinct(t, 1)
}

func TestRetentionAndReplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.newOutbox(t, nil)
	ctx := context.Background()
	oldOrder, newOrder := uuid.NewString(), uuid.NewString()
	write(t, ctx, b.pool, o, placed(oldOrder))
	newIDs := write(t, ctx, b.pool, o, placed(newOrder))
	b.pool.Exec(ctx, "UPDATE outbox SET created_at = now() - interval '8 days' WHERE key = $1", oldOrder)

	// Nothing is published yet: retention must keep both.
	if n, err := outbox.DeleteExpired(ctx, b.pool, time.Now().Add(-7*24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("DeleteExpired before publishing = %d, %v; want 0", n, err)
	}
	r := startRelay(t, o)
	waitFor(t, "published", func() bool { return pending(t, b.pool) == 0 })
	r.Halt(t)

	n, err := outbox.DeleteExpired(ctx, b.pool, time.Now().Add(-7*24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("DeleteExpired = %d, %v; want 1 row", n, err)
	}
	if count(t, b.pool, "true") != 1 {
		t.Fatal("retention deleted a row inside the retention window")
	}

	c := consume(t, b.broker.Addrs, map[string]bool{newOrder: true})
	c.waitDistinct(t, 1)
	n, err = outbox.Replay(ctx, b.pool, time.Now().Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v; want 1 row", n, err)
	}
	startRelay(t, b.newOutbox(t, nil))
	waitFor(t, "replayed", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.byOrder[newOrder]) == 2
	})
	if dups := c.checkOrder(t, map[string][]string{newOrder: newIDs}); dups != 1 {
		t.Fatalf("replay delivered %d copies, want 1", dups)
	}
}

// The broker process stops (not a fault: its port is closed) while orders
// keep committing, then restarts from its data directory: everything
// written before, during and after arrives, in order.
func TestBrokerStoppedAndRestarted(t *testing.T) {
	t.Parallel()
	if os.Getenv("KAFKA_BROKERS") != "" {
		t.Skip("stops and restarts the embedded broker")
	}
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := testenv.FreeAddr(t)
	broker, err := kafka.StartEmbedded(addr, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopics(context.Background(), []string{addr}, kafka.Security{}, contract.TopicOrders); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	newOutbox := func() *outbox.Outbox {
		return outbox.New(pool, outbox.Config{Service: "orders", Brokers: []string{addr}}, log)
	}
	o := newOutbox()
	r := startRelay(t, o)
	ctx := context.Background()
	orderID := uuid.NewString()
	want := write(t, ctx, pool, o, placed(orderID))
	waitFor(t, "first event published", func() bool { return pending(t, pool) == 0 })

	broker.Close()
	before := outbox.Polls(o)
	for range 20 {
		want = append(want, write(t, ctx, pool, o, cancelled(orderID))...)
	}
	// The relay read the new rows and is stuck producing them.
	waitFor(t, "the relay to try", func() bool { return outbox.Polls(o) > before })
	// Shutting down while the broker is away is prompt and loses nothing.
	r.Halt(t)
	if n := pending(t, pool); n != 20 {
		t.Fatalf("%d rows pending while the broker was down, want 20", n)
	}
	startRelay(t, newOutbox())
	broker, err = kafka.StartEmbedded(addr, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	c := consume(t, []string{addr}, map[string]bool{orderID: true})
	c.waitDistinct(t, len(want))
	c.checkOrder(t, map[string][]string{orderID: want})
	waitFor(t, "backlog drained", func() bool { return pending(t, pool) == 0 })
}

// The leader's database session is killed (as when its host vanishes): it
// must notice it lost the lease and stop publishing, and a relay must lead
// again and publish what follows.
func TestLeaderSessionKilled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, c := b.newOutbox(t, nil), b.newOutbox(t, nil)
	startRelay(t, a)
	startRelay(t, c)
	waitFor(t, "a leader", func() bool { return a.Leader() || c.Leader() })
	old := a
	if c.Leader() {
		old = c
	}
	ctx := context.Background()
	var killed int
	err := b.pool.QueryRow(ctx, `
		SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminated %d lease sessions (%v), want 1", killed, err)
	}
	// It waits LeaseRetry (200 ms) before competing again: long enough to see.
	waitFor(t, "the old leader to step down", func() bool { return !old.Leader() })
	waitFor(t, "a new leader", func() bool { return a.Leader() || c.Leader() })

	orderID := uuid.NewString()
	cons := consume(t, b.broker.Addrs, map[string]bool{orderID: true})
	want := write(t, ctx, b.pool, a, placed(orderID), cancelled(orderID))
	cons.waitDistinct(t, 2)
	cons.checkOrder(t, map[string][]string{orderID: want})
}

// LockKey must not give the transaction its id: the point is to wait for
// the key before drawing one.
func TestLockKeyDrawsNoTransactionID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if err := outbox.LockKey(ctx, tx, uuid.NewString()); err != nil {
			return err
		}
		var assigned bool
		if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id_if_assigned() IS NOT NULL").Scan(&assigned); err != nil {
			return err
		}
		if assigned {
			t.Error("LockKey assigned a transaction id")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, what, cond)
}

// A Batch written in one statement publishes its events in the order they
// were added, each with the correlation id of the context it was added
// with; an invalid event adds nothing.
func TestWriteBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.newOutbox(t, nil)
	ctx := context.Background()
	orders := map[string]bool{}
	want := map[string][]string{}
	var batch outbox.Batch
	var orderID string
	for i := range 30 {
		if i%3 == 0 { // three events per order
			orderID = uuid.NewString()
		}
		orders[orderID] = true
		e := contract.Event(placed(orderID))
		if i%2 == 1 {
			e = cancelled(orderID)
		}
		if err := batch.Add(correlation.WithID(ctx, "corr-"+orderID), e); err != nil {
			t.Fatal(err)
		}
		want[orderID] = append(want[orderID], e.Meta().EventID)
	}
	bad := placed(uuid.NewString())
	bad.Currency = "euro"
	if err := batch.Add(ctx, placed(uuid.NewString()), bad); err == nil || batch.Len() != 30 {
		t.Fatalf("invalid event: err %v, %d events in the batch; want an error and 30", err, batch.Len())
	}
	if err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return o.WriteBatch(ctx, tx, &batch) }); err != nil {
		t.Fatal(err)
	}
	if n := count(t, b.pool, "true"); n != 30 {
		t.Fatalf("%d outbox rows, want 30", n)
	}
	c := consume(t, b.broker.Addrs, orders)
	startRelay(t, o)
	c.waitDistinct(t, 30)
	c.checkOrder(t, want)
	c.mu.Lock()
	defer c.mu.Unlock()
	for orderID, recs := range c.byOrder {
		for _, r := range recs {
			if got := header(r, "x-correlation-id"); got != "corr-"+orderID {
				t.Errorf("order %s: correlation id %q", orderID, got)
			}
		}
	}
}
