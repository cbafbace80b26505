package rabbit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func message(topo rabbit.Topology, body string) outbox.Message {
	return outbox.Message{
		EventID: uuid.Must(uuid.NewV7()), Topic: topo.Exchange, Key: "order-1", Type: "SendEmail",
		Payload: []byte(body), CorrelationID: "corr-1", OccurredAt: time.Now(),
	}
}

// publishAll publishes msgs the way the outbox relay does: what was not
// confirmed goes again in the next call, until everything was.
func publishAll(t *testing.T, p *rabbit.Publisher, msgs []outbox.Message, batch int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(msgs) > 0 {
		n, err := p.Publish(ctx, msgs[:min(batch, len(msgs))])
		msgs = msgs[n:]
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

type recorder struct {
	mu       sync.Mutex
	attempts map[string][]int // message id → attempt numbers seen
	outcomes map[string][]rabbit.Outcome
}

func newRecorder() *recorder {
	return &recorder{attempts: map[string][]int{}, outcomes: map[string][]rabbit.Outcome{}}
}

func (r *recorder) seen(id string, attempt int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[id] = append(r.attempts[id], attempt)
}

func (r *recorder) failed(_ context.Context, d *rabbit.Delivery, o rabbit.Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes[d.MessageId] = append(r.outcomes[d.MessageId], o)
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.attempts)
}

func startWorker(t *testing.T, cfg rabbit.WorkerConfig) *rabbit.Worker {
	t.Helper()
	w, err := rabbit.NewWorker(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Start(t, w.Run)
	return w
}

// Declaring the topology again, from another connection, changes nothing
// and fails nothing; every queue exists.
func TestTopologyIdempotent(t *testing.T) {
	t.Parallel()
	topo := amqptest.Topology(t)
	for range 2 {
		c := amqptest.Conn(t, topo)
		if err := c.Ready(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, q := range topo.Queues() {
			if _, err := c.QueueDepth(context.Background(), q); err != nil {
				t.Errorf("queue %s: %v", q, err)
			}
		}
		_ = c.Close()
	}
	if got := topo.Queues(); len(got) != 5 || got[1] != topo.Exchange+".retry.1" || got[4] != topo.Queue+".dead" {
		t.Errorf("queues %v", got)
	}
}

// A message failing transiently is retried through the TTL queues with its
// attempt count in the message, then succeeds; one failing permanently,
// one failing every time and garbage published straight to the exchange
// end in the dead queue with the error in a header; the queue drains.
func TestRetriesAndDeadLetters(t *testing.T) {
	t.Parallel()
	topo := amqptest.Topology(t)
	conn := amqptest.Conn(t, topo)
	rec := newRecorder()
	startWorker(t, rabbit.WorkerConfig{
		Conn: conn, MaxAttempts: 4, Failed: rec.failed,
		Handler: func(_ context.Context, d *rabbit.Delivery) error {
			rec.seen(d.MessageId, d.Attempt)
			switch string(d.Body) {
			case `"ok"`:
				return nil
			case `"flaky"`:
				if d.Attempt < 3 {
					return errors.New("451 try later")
				}
				return nil
			case `"always"`:
				return errors.New("451 still busy")
			default:
				return fmt.Errorf("malformed %q: %w", d.Body, rabbit.ErrPermanent)
			}
		},
	})
	ok, flaky, always, perm := message(topo, `"ok"`), message(topo, `"flaky"`), message(topo, `"always"`), message(topo, `"bad"`)
	publishAll(t, rabbit.NewPublisher(conn), []outbox.Message{ok, flaky, always, perm}, 10)
	amqptest.Publish(t, topo.Exchange, topo.RoutingKey, amqp.Publishing{MessageId: "garbage", Body: []byte("not json")})

	testenv.WaitFor(t, 20*time.Second, "every message settled", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.attempts[flaky.EventID.String()]) == 3 && len(rec.outcomes[always.EventID.String()]) == 4 &&
			len(rec.outcomes[perm.EventID.String()]) == 1 && len(rec.outcomes["garbage"]) == 1
	})
	rec.mu.Lock()
	if got := fmt.Sprint(rec.attempts[flaky.EventID.String()]); got != "[1 2 3]" {
		t.Errorf("flaky attempts %s", got)
	}
	if got := rec.attempts[ok.EventID.String()]; len(got) != 1 {
		t.Errorf("ok attempts %v", got)
	}
	var delays []time.Duration
	for _, o := range rec.outcomes[always.EventID.String()] {
		if !o.Dead {
			delays = append(delays, o.Retry)
		}
	}
	if fmt.Sprint(delays) != fmt.Sprint(topo.RetryDelays) {
		t.Errorf("retry delays %v, want %v (growing)", delays, topo.RetryDelays)
	}
	rec.mu.Unlock()

	dead := map[string]amqp.Delivery{}
	for len(dead) < 3 {
		m, got := amqptest.Get(t, topo.DeadQueue(), 10*time.Second)
		if !got {
			t.Fatalf("dead queue holds %d messages, want 3", len(dead))
		}
		dead[m.MessageId] = m
	}
	for id, want := range map[string]struct {
		attempts int64
		err      string
	}{always.EventID.String(): {4, "451 still busy"}, perm.EventID.String(): {1, `malformed "\"bad\"": permanent failure`}, "garbage": {1, `malformed "not json": permanent failure`}} {
		m, ok := dead[id]
		if !ok {
			t.Errorf("%s not dead", id)
			continue
		}
		if m.Headers[rabbit.HeaderAttempts] != want.attempts || m.Headers[rabbit.HeaderError] != want.err {
			t.Errorf("%s dead with headers %v, want attempts %d, error %q", id, m.Headers, want.attempts, want.err)
		}
	}
	if m := dead[always.EventID.String()]; m.Headers["x-correlation-id"] != "corr-1" || m.CorrelationId != "corr-1" || m.Type != "SendEmail" {
		t.Errorf("dead copy lost properties: %+v", m)
	}
	for _, q := range append([]string{topo.Queue}, topo.Queues()[1:4]...) {
		if n, err := conn.QueueDepth(context.Background(), q); err != nil || n != 0 {
			t.Errorf("%s holds %d (%v), want 0", q, n, err)
		}
	}
}

// Connections closed by force while messages are published and consumed
// (at least 1,000, and publishing goes on until two closes happened): the
// publisher and the worker reconnect, every message arrives and is handled.
func TestForcedCloseLosesNothing(t *testing.T) {
	t.Parallel()
	topo := amqptest.Topology(t)
	conn := amqptest.Conn(t, topo)
	rec := newRecorder()
	startWorker(t, rabbit.WorkerConfig{Conn: conn, Handler: func(_ context.Context, d *rabbit.Delivery) error {
		rec.seen(d.MessageId, d.Attempt)
		time.Sleep(time.Millisecond)
		return nil
	}})
	var closes atomic.Int32
	published := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		p := rabbit.NewPublisher(conn)
		for published < 1000 || closes.Load() < 2 {
			batch := make([]outbox.Message, 10)
			for i := range batch {
				batch[i] = message(topo, fmt.Sprintf(`{"n":%d}`, published+i))
			}
			publishAll(t, p, batch, 10)
			published += len(batch)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	for closes.Load() < 2 {
		time.Sleep(300 * time.Millisecond)
		closes.Add(int32(amqptest.CloseConnections(t, t.Name())))
	}
	<-done
	testenv.WaitFor(t, 30*time.Second, "every message handled", func() bool { return rec.distinct() == published })
	// Deliveries handled but not yet acked when a connection died come back
	// (at least once); the reconnected worker drains them.
	testenv.WaitFor(t, 30*time.Second, "queue drained", func() bool {
		n, err := conn.QueueDepth(context.Background(), topo.Queue)
		return err == nil && n == 0
	})
}

// A worker that dies after its handler succeeded and before the ack: the
// broker hands the message out again (the email service's sent-task table
// turns that into no second email).
func TestCrashBeforeAckRedelivers(t *testing.T) {
	t.Parallel()
	topo := amqptest.Topology(t)
	conn := amqptest.Conn(t, topo)
	rec := newRecorder()
	var once sync.Once
	w, err := rabbit.NewWorker(rabbit.WorkerConfig{Conn: conn, Handler: func(_ context.Context, d *rabbit.Delivery) error {
		rec.seen(d.MessageId, d.Attempt)
		return nil
	}}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	w.SetCrashAfterHandle(func(*rabbit.Delivery) bool {
		crash := false
		once.Do(func() { crash = true })
		return crash
	})
	testenv.Start(t, w.Run)
	m := message(topo, `"x"`)
	publishAll(t, rabbit.NewPublisher(conn), []outbox.Message{m}, 1)
	testenv.WaitFor(t, 20*time.Second, "handled twice", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.attempts[m.EventID.String()]) == 2
	})
	if n, err := conn.QueueDepth(context.Background(), topo.Queue); err != nil || n != 0 {
		t.Errorf("queue holds %d (%v)", n, err)
	}
}

// A queue that exists with other settings (another retry delay) stops the
// worker with a clear error instead of retrying forever.
func TestTopologyMismatchIsPermanent(t *testing.T) {
	t.Parallel()
	topo := amqptest.Topology(t)
	if err := amqptest.Conn(t, topo).Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	changed := topo
	changed.RetryDelays = []time.Duration{time.Second, 100 * time.Millisecond, 200 * time.Millisecond}
	w, err := rabbit.NewWorker(rabbit.WorkerConfig{Conn: amqptest.Conn(t, changed), Handler: func(context.Context, *rabbit.Delivery) error { return nil }}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Run(ctx); !errors.Is(err, rabbit.ErrTopologyMismatch) || !strings.Contains(err.Error(), "PRECONDITION_FAILED") {
		t.Errorf("Run = %v, want ErrTopologyMismatch naming PRECONDITION_FAILED", err)
	}
}

// A message whose every delivery kills its worker (never acked, never
// forwarded) is dead-lettered by email.send's delivery limit, at least
// once, instead of looping forever.
func TestDeliveryLimitParksAPoisonPill(t *testing.T) {
	t.Parallel()
	topo := amqptest.Topology(t)
	topo.DeliveryLimit = 2
	conn := amqptest.Conn(t, topo)
	rec := newRecorder()
	w, err := rabbit.NewWorker(rabbit.WorkerConfig{Conn: conn, Handler: func(_ context.Context, d *rabbit.Delivery) error {
		rec.seen(d.MessageId, d.Attempt)
		return nil
	}}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	w.SetCrashAfterHandle(func(*rabbit.Delivery) bool { return true })
	testenv.Start(t, w.Run)
	m := message(topo, `"pill"`)
	publishAll(t, rabbit.NewPublisher(conn), []outbox.Message{m}, 1)
	d, ok := amqptest.Get(t, topo.DeadQueue(), 30*time.Second)
	if !ok || d.MessageId != m.EventID.String() {
		t.Fatalf("dead queue: %v %q, want the pill", ok, d.MessageId)
	}
	rec.mu.Lock()
	n := len(rec.attempts[m.EventID.String()])
	rec.mu.Unlock()
	if n < 2 || n > 4 {
		t.Errorf("handled %d times before parking, want about the limit (2) plus one", n)
	}
}

// A queue deleted behind a connected publisher's back: the next message
// reaches no queue, comes back (mandatory) instead of being confirmed and
// lost, is not counted as published, and once the topology is declared
// again it goes through.
func TestPublisherUnroutableIsNotPublished(t *testing.T) {
	t.Parallel()
	topo := amqptest.Topology(t)
	conn := amqptest.Conn(t, topo)
	p := rabbit.NewPublisher(conn)
	ctx := context.Background()
	first, second := message(topo, `"first"`), message(topo, `"second"`)
	if n, err := p.Publish(ctx, []outbox.Message{first}); n != 1 || err != nil {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	amqptest.DeleteQueue(t, topo.Queue)
	n, err := p.Publish(ctx, []outbox.Message{second})
	if n != 0 || err == nil || !strings.Contains(err.Error(), "unroutable") {
		t.Fatalf("Publish to a deleted queue = %d, %v; want 0 and an unroutable error", n, err)
	}
	publishAll(t, p, []outbox.Message{second}, 1)
	m, ok := amqptest.Get(t, topo.Queue, 5*time.Second)
	if !ok || m.MessageId != second.EventID.String() {
		t.Fatalf("queue: %v %q, want the second message", ok, m.MessageId)
	}
}

// A retry queue deleted behind a connected worker's back: the failed
// message's copy comes back instead of being lost with the original
// acked; the message is redelivered, the topology declared again, and the
// retry happens.
func TestWorkerUnroutableCopyIsNotLost(t *testing.T) {
	t.Parallel()
	topo := amqptest.Topology(t)
	conn := amqptest.Conn(t, topo)
	rec := newRecorder()
	startWorker(t, rabbit.WorkerConfig{Conn: conn, Failed: rec.failed, Handler: func(_ context.Context, d *rabbit.Delivery) error {
		rec.seen(d.MessageId, d.Attempt)
		if d.Attempt == 1 {
			return errors.New("451 try later")
		}
		return nil
	}})
	if err := conn.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	amqptest.DeleteQueue(t, topo.RetryQueue(1))
	m := message(topo, `"x"`)
	publishAll(t, rabbit.NewPublisher(conn), []outbox.Message{m}, 1)
	testenv.WaitFor(t, 20*time.Second, "the retry handled", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		a := rec.attempts[m.EventID.String()]
		return len(a) > 0 && a[len(a)-1] == 2
	})
}

// A message its handler cannot take yet (rabbit.ErrNotYet) comes again
// through the first retry queue with its attempt number unchanged, more
// times than MaxAttempts allows, and is not reported as failed.
func TestNotYetSpendsNoAttempt(t *testing.T) {
	t.Parallel()
	topo := amqptest.Topology(t)
	conn := amqptest.Conn(t, topo)
	rec := newRecorder()
	startWorker(t, rabbit.WorkerConfig{Conn: conn, MaxAttempts: 2, Failed: rec.failed, Handler: func(_ context.Context, d *rabbit.Delivery) error {
		rec.seen(d.MessageId, d.Attempt)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.attempts[d.MessageId]) <= 3 {
			return fmt.Errorf("busy elsewhere: %w", rabbit.ErrNotYet)
		}
		return nil
	}})
	m := message(topo, `"x"`)
	publishAll(t, rabbit.NewPublisher(conn), []outbox.Message{m}, 1)
	testenv.WaitFor(t, 20*time.Second, "handled four times", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.attempts[m.EventID.String()]) == 4
	})
	testenv.WaitFor(t, 10*time.Second, "queues empty", func() bool {
		n, err := conn.QueueDepth(context.Background(), topo.Queue)
		r, err2 := conn.QueueDepth(context.Background(), topo.RetryQueue(1))
		return err == nil && err2 == nil && n == 0 && r == 0
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := fmt.Sprint(rec.attempts[m.EventID.String()]); got != "[1 1 1 1]" {
		t.Errorf("attempts %s, want [1 1 1 1]", got)
	}
	if len(rec.outcomes) != 0 {
		t.Errorf("Failed called: %v", rec.outcomes)
	}
	if d, ok := amqptest.Get(t, topo.DeadQueue(), 0); ok {
		t.Errorf("parked: %s", d.MessageId)
	}
}
