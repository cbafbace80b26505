package rabbit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/retry"
)

// Message headers the worker reads and writes.
const (
	headerCorrelation = "x-correlation-id"
	// HeaderAttempts is how many attempts a message has had: set on the
	// copy sent to a retry queue or to the dead queue, so the count
	// travels with the message rather than living in a worker's memory.
	HeaderAttempts = "x-attempts"
	// HeaderError is the last attempt's error, on retried and dead messages.
	HeaderError = "x-error"
)

// ErrPermanent marks a Handler error that retrying cannot fix (a malformed
// message, an SMTP 5xx): wrap it and the message is parked at once.
var ErrPermanent = errors.New("permanent failure")

// ErrRequeue marks a Handler error after which the message must come again
// exactly as it is: neither forwarded to a retry queue nor counted as an
// attempt, just left unacked (e.g. an email sent whose sent record could
// not be written before shutdown).
var ErrRequeue = errors.New("leave the message for redelivery")

// ErrNotYet marks a Handler error after which the message must wait and
// come again without spending an attempt (e.g. another worker holds the
// task): it goes through the first retry queue with its attempt count
// unchanged, and Failed is not called.
var ErrNotYet = errors.New("not yet")

// Delivery is a message handed to the Handler.
type Delivery struct {
	amqp.Delivery
	// Attempt is this attempt's number, 1 for the first: the message's
	// x-attempts header plus one.
	Attempt int
}

// CorrelationID is the message's x-correlation-id header, or its
// correlation_id property.
func (d *Delivery) CorrelationID() string {
	if s, ok := d.Headers[headerCorrelation].(string); ok && s != "" {
		return s
	}
	return d.Delivery.CorrelationId
}

// Outcome is what became of a message that failed: retried after a delay,
// or parked in the dead queue.
type Outcome struct {
	Attempt int
	Err     error
	Dead    bool
	Retry   time.Duration // the delay, when not Dead
}

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	Conn *Conn
	// Handler handles one message; nil means done (the message is acked).
	// An error retries it after the next delay of the topology, or parks
	// it when it wraps ErrPermanent or this was attempt MaxAttempts.
	Handler func(ctx context.Context, d *Delivery) error
	// Failed, when set, learns of each failure's outcome after the retry
	// or dead copy was confirmed and before the original is acked (the
	// email service records status and error there).
	Failed func(ctx context.Context, d *Delivery, o Outcome)
	// Prefetch is how many unacked messages the worker holds, all handled
	// concurrently; default 20.
	Prefetch int
	// MaxAttempts is how many attempts a message gets; default 5.
	MaxAttempts int
	// Registerer receives orderflow_infrastructure_waiting and
	// orderflow_infrastructure_retries_total{component="email-worker"};
	// nil registers none.
	Registerer prometheus.Registerer
	// Tracing, when set, gives each delivery a process span (trace.go);
	// nil: off.
	Tracing trace.TracerProvider
}

// Worker consumes the topology's queue.
type Worker struct {
	cfg    WorkerConfig
	log    *slog.Logger
	outage *retry.Outage // infrastructure failures being waited out
	tracer trace.Tracer  // nil when tracing is off

	// crashAfterHandle is a test hook: when it returns true after a
	// successful Handler, the worker drops its connection without acking,
	// as a process killed at that point would.
	crashAfterHandle func(*Delivery) bool
}

// NewWorker returns a Worker for cfg.
func NewWorker(cfg WorkerConfig, log *slog.Logger) (*Worker, error) {
	if cfg.Conn == nil || cfg.Handler == nil {
		return nil, errors.New("rabbit: worker needs Conn and Handler")
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 20
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	w := &Worker{
		cfg:    cfg,
		log:    log.With("component", "worker", "queue", cfg.Conn.topo.Queue),
		outage: retry.NewOutage("email-worker", cfg.Registerer),
	}
	if cfg.Tracing != nil {
		w.tracer = cfg.Tracing.Tracer(tracerName)
	}
	return w, nil
}

// Ready reports an infrastructure failure the worker's messages are
// waiting out (see handle), for /readyz.
func (w *Worker) Ready(context.Context) error { return w.outage.Err() }

// Run consumes until ctx is done, reconnecting whenever the connection or
// channel is lost; messages in hand then are redelivered by the broker (at
// least once). On shutdown it waits for the messages in hand.
func (w *Worker) Run(ctx context.Context) error {
	wait := 100 * time.Millisecond
	for {
		began := time.Now()
		err := w.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrTopologyMismatch) {
			return err
		}
		if time.Since(began) > time.Minute {
			wait = 100 * time.Millisecond // it ran a while: a fresh failure
		}
		w.log.Warn("worker lost its channel; reconnecting", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// session consumes on one channel until it closes or ctx is done.
func (w *Worker) session(ctx context.Context) error {
	conn := w.cfg.Conn
	ch, err := conn.Channel(ctx)
	if err != nil {
		return err
	}
	defer conn.Bounded(ch.Close)
	pub, err := conn.Channel(ctx) // retry and dead copies, confirmed
	if err != nil {
		return err
	}
	returns := watchReturns(pub)
	defer returns.wait() // after pub.Close, deferred next: the watch ends with the channel
	defer conn.Bounded(pub.Close)
	var deliveries <-chan amqp.Delivery
	err = conn.Bounded(func() error {
		if err := pub.Confirm(false); err != nil {
			return fmt.Errorf("rabbit: confirm mode: %w", err)
		}
		if err := ch.Qos(w.cfg.Prefetch, 0, false); err != nil {
			return fmt.Errorf("rabbit: qos: %w", err)
		}
		deliveries, err = ch.ConsumeWithContext(ctx, conn.topo.Queue, "", false, false, false, false, nil)
		if err != nil {
			return fmt.Errorf("rabbit: consume %s: %w", conn.topo.Queue, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	pubClosed := pub.NotifyClose(make(chan *amqp.Error, 1))
	copies := &copier{conn: conn, ch: pub, returns: returns}
	sctx, crash := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		// Messages in hand end first (a failed one's forward waits on
		// sctx); deliveries still buffered are read off so the library's
		// goroutines can end, and the broker redelivers them.
		crash()
		wg.Wait()
		go func() {
			for range deliveries {
			}
		}()
	}()
	for {
		select {
		case <-sctx.Done():
			if ctx.Err() == nil {
				return errors.New("simulated crash")
			}
			return nil
		case err := <-closed:
			return fmt.Errorf("channel closed: %v", err)
		case err := <-pubClosed:
			return fmt.Errorf("publishing channel closed: %v", err)
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("deliveries closed")
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.handle(sctx, copies, &Delivery{Delivery: d, Attempt: attempts(d.Headers) + 1}, func() {
					crash()
					w.cfg.Conn.Close() // unacked messages go back to the queue
				})
			}()
		}
	}
}

// handle runs one message to its ack (or to a lost channel, when the
// broker redelivers it).
func (w *Worker) handle(ctx context.Context, copies *copier, d *Delivery, crash func()) {
	hctx := ctx
	if id := d.CorrelationID(); id != "" {
		hctx = correlation.WithID(ctx, id)
	}
	hctx, span := w.processSpan(hctx, d)
	log := w.log.With("message_id", d.MessageId, "attempt", d.Attempt)
	err := w.run(hctx, d)
	defer func() { endProcess(span, err) }()
	// An infrastructure failure (the database or the SMTP server
	// unreachable: package retry) is not the message's: it is tried again
	// in place, holding its prefetch slot, for as long as that lasts, and
	// spends no attempt; the queue behind it waits. At the session's end it
	// goes back to the queue as it was.
	for streak := 1; retry.Infrastructure(err) && !errors.Is(err, ErrPermanent); streak++ {
		if streak == 1 || streak%20 == 0 {
			log.WarnContext(hctx, "infrastructure failure; waiting, no attempt spent", "failures", streak, "err", err)
		}
		if !w.outage.Wait(ctx, streak, err) {
			_ = d.Nack(false, true)
			return
		}
		err = w.run(hctx, d)
	}
	w.outage.Recovered() // whatever the handler says now, the infrastructure answered
	if err == nil {
		if w.crashAfterHandle != nil && w.crashAfterHandle(d) {
			crash()
			return
		}
		if err := d.Ack(false); err != nil {
			log.WarnContext(hctx, "ack failed; the message will be redelivered", "err", err)
		}
		return
	}
	if errors.Is(err, ErrRequeue) {
		log.WarnContext(hctx, "message left for redelivery", "err", err)
		_ = d.Nack(false, true)
		return
	}
	topo := w.cfg.Conn.topo
	if errors.Is(err, ErrNotYet) {
		if ferr := copies.forward(hctx, d, d.Attempt-1, topo.RetryExchange(), topo.RetryQueue(1), err); ferr != nil {
			log.WarnContext(hctx, "could not set a message aside; it will be redelivered", "err", ferr)
			_ = d.Nack(false, true)
			return
		}
		log.InfoContext(hctx, "message set aside; it comes again", "retry_in", topo.RetryDelays[0], "err", err)
		if err := d.Ack(false); err != nil {
			log.WarnContext(hctx, "ack failed; the message will be redelivered", "err", err)
		}
		return
	}
	o := Outcome{Attempt: d.Attempt, Err: err, Dead: errors.Is(err, ErrPermanent) || d.Attempt >= w.cfg.MaxAttempts}
	exchange, key := topo.DeadExchange(), deadKey
	if !o.Dead {
		exchange, key = topo.RetryExchange(), topo.RetryQueue(d.Attempt)
		o.Retry = topo.RetryDelays[min(d.Attempt, len(topo.RetryDelays))-1]
	}
	if err := copies.forward(hctx, d, d.Attempt, exchange, key, err); err != nil {
		// Not acked: the broker hands the message out again.
		log.WarnContext(hctx, "could not forward a failed message; it will be redelivered", "err", err)
		_ = d.Nack(false, true)
		return
	}
	if w.cfg.Failed != nil {
		w.cfg.Failed(hctx, d, o)
	}
	if o.Dead {
		log.WarnContext(hctx, "message parked", "dead_queue", w.cfg.Conn.topo.DeadQueue(), "err", err)
	} else {
		log.InfoContext(hctx, "message failed; will retry", "retry_in", o.Retry, "err", err)
	}
	if err := d.Ack(false); err != nil {
		log.WarnContext(hctx, "ack failed; the message will be redelivered", "err", err)
	}
}

// run calls the Handler, turning a panic into an error.
func (w *Worker) run(ctx context.Context, d *Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return w.cfg.Handler(ctx, d)
}

// copier publishes the retry and dead copies of failed messages on one
// confirm-mode channel, one at a time: copies are mandatory (a copy that
// reaches no queue, one deleted behind the worker's back, comes back), and
// with one copy in flight a return recorded by its confirm is that copy's
// (the broker sends it before the confirm; see returnWatch). Failures are
// rare, so the serialisation costs nothing that matters.
type copier struct {
	conn    *Conn
	mu      sync.Mutex
	ch      *amqp.Channel
	returns *returnWatch // ch's, read for the channel's whole life
}

// forward publishes a copy of d, with attempts and its error in headers,
// to exchange/key and waits for the broker's confirm.
func (c *copier) forward(ctx context.Context, d *Delivery, attempts int, exchange, key string, cause error) error {
	headers := amqp.Table{}
	for k, v := range d.Headers {
		if !strings.HasPrefix(k, "x-death") && k != "x-first-death-exchange" && k != "x-first-death-queue" &&
			k != "x-first-death-reason" && k != "x-delivery-count" {
			headers[k] = v
		}
	}
	msg := cause.Error()
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	headers[HeaderAttempts] = int64(attempts)
	headers[HeaderError] = msg
	c.mu.Lock()
	defer c.mu.Unlock()
	c.returns.forget() // left by a copy whose wait was cut short
	dc, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, amqp.Publishing{
		Headers: headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: amqp.Persistent, CorrelationId: d.Delivery.CorrelationId, MessageId: d.MessageId,
		Timestamp: d.Timestamp, Type: d.Type, Body: d.Body,
	})
	if err != nil {
		return err
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	c.returns.sync()
	if r, ok := c.returns.take(d.MessageId); ok && r.Exchange == exchange {
		err := fmt.Errorf("copy to %s returned unroutable (%d %s)", exchange, r.ReplyCode, r.ReplyText)
		if rerr := c.conn.Redeclare(ctx); rerr != nil {
			err = fmt.Errorf("%w; declaring the topology again: %w", err, rerr)
		}
		return err
	}
	if !acked {
		return fmt.Errorf("broker did not confirm the copy to %s", exchange)
	}
	return nil
}

// attempts reads the x-attempts header: 0 when absent, not a number or
// out of range (a stranger's header must not break the arithmetic).
func attempts(h amqp.Table) int {
	var n int64
	switch v := h[HeaderAttempts].(type) {
	case int64:
		n = v
	case int32:
		n = int64(v)
	case int:
		n = int64(v)
	case int16:
		n = int64(v)
	case int8:
		n = int64(v)
	}
	if n < 0 || n > 1_000_000 {
		return 0
	}
	return int(n)
}
