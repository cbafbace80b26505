// Package retry holds the one rule every Orderflow worker (the consumer
// runner, the timer worker, the outbox relay and the email worker) applies
// to a failure: is it the infrastructure's or the work's own?
//
// Infrastructure failures are those of the database or a broker being
// away or overloaded, not of the record or task in hand: a connection
// refused, reset or closed, a server shutting down (SQLSTATE classes 08,
// 57P, 53 and 58), a serialization failure or deadlock (40001, 40P01), a
// network timeout or a pool acquire timing out, a retriable Kafka error, a
// closed AMQP channel. They pass when the infrastructure returns, so a
// worker retries them with capped backoff for as long as they last, spends
// none of the bounded attempts on them and never dead-letters because of
// them: a PostgreSQL restart must not empty a partition into its DLQ. Everything else (a
// handler's own error, a constraint violated, a panic, poison) spends
// attempts and, when they run out, goes where the worker parks failures.
//
// Outage tracks one worker's current infrastructure wait, for /readyz (the
// error and how long it lasts) and for the metrics
// orderflow_infrastructure_waiting{component} (1 while waiting) and
// orderflow_infrastructure_retries_total{component}.
//
// Not provided: telling a failure the record itself provokes (a query that
// crashes the server every time) from an outage. Such a record waits, with
// its partition, until someone looks; the waiting metric shows it.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/orderflow/orderflow/pkg/events/internal/clock"
)

// Infrastructure reports whether err is an infrastructure failure (see the
// package doc). A nil error and context errors are not: a worker whose
// context ended stops rather than retries.
func Infrastructure(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	// A failure to connect is the infrastructure's whatever the server
	// said (too many clients, the database not accepting connections).
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return infrastructureSQLState(pe.Code)
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		// Code 320 is a connection forced closed; 504 a channel error
		// (ErrClosed: the channel or connection is not open); both pass
		// with a reconnect. Others (406 precondition failed, 404 not found)
		// are the work's.
		return ae.Code == amqp.ConnectionForced || ae.Code == amqp.ChannelError
	}
	if kerr.IsRetriable(err) {
		return true
	}
	var ne net.Error
	switch {
	case errors.Is(err, pgconn.ErrConnClosed), pgconn.SafeToRetry(err), pgconn.Timeout(err),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne):
		return true
	}
	return false
}

// infrastructureSQLState reports whether a server error's SQLSTATE is a
// condition of the server, not of the statement: connection exceptions
// (08), operator intervention such as admin or crash shutdown (57P),
// insufficient resources (53), system errors (58), and the transaction
// conflicts that a retry resolves (40001 serialization failure, 40P01
// deadlock).
func infrastructureSQLState(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "57P"),
		strings.HasPrefix(code, "53"), strings.HasPrefix(code, "58"),
		code == "40001", code == "40P01":
		return true
	}
	return false
}

// Backoff is exponential backoff with full jitter: the wait after the n-th
// failure in a row is uniform in [0, min(Max, Base·2^(n-1))].
type Backoff struct {
	Base, Max time.Duration
}

// Delay is the wait after the n-th failure in a row (n ≥ 1).
func (b Backoff) Delay(n int) time.Duration {
	ceiling := b.Base << min(max(n-1, 0), 30)
	if ceiling <= 0 || ceiling > b.Max {
		ceiling = b.Max
	}
	return rand.N(ceiling + 1)
}

// DefaultInfrastructure is the backoff for infrastructure waits: quick to
// notice a blip's end, and at most 5 s between tries of a long outage.
var DefaultInfrastructure = Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}

// Outage is one worker's current infrastructure wait. Its zero value is not
// usable; make one with NewOutage. It is safe for concurrent use: a worker's
// goroutines (a consumer's partitions) share one.
type Outage struct {
	component string
	backoff   Backoff
	retries   prometheus.Counter

	mu    sync.Mutex
	err   error     // the last infrastructure failure, nil after a success
	since time.Time // when the current wait began
}

// NewOutage returns the Outage of component ("consumer", "timer", "relay",
// "email-worker"), registering its metrics on reg when reg is not nil.
func NewOutage(component string, reg prometheus.Registerer) *Outage {
	o := &Outage{
		component: component,
		backoff:   DefaultInfrastructure,
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "orderflow_infrastructure_retries_total",
			Help:        "Work retried because the database or a broker failed (no attempt spent).",
			ConstLabels: prometheus.Labels{"component": component},
		}),
	}
	if reg != nil {
		reg.MustRegister(o.retries, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "orderflow_infrastructure_waiting",
			Help:        "1 while the component waits for the database or a broker to come back.",
			ConstLabels: prometheus.Labels{"component": component},
		}, func() float64 {
			if o.Err() != nil {
				return 1
			}
			return 0
		}))
	}
	return o
}

// Failed records an infrastructure failure.
func (o *Outage) Failed(err error) {
	o.retries.Inc()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		o.since = time.Now()
	}
	o.err = err
}

// Recovered records that work succeeded: the wait, if any, is over.
func (o *Outage) Recovered() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.err = nil
}

// Err is nil unless the component is waiting; then it says for how long
// and why, for /readyz.
func (o *Outage) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		return nil
	}
	return fmt.Errorf("%s waiting for infrastructure for %s: %w",
		o.component, time.Since(o.since).Round(100*time.Millisecond), o.err)
}

// Check is Err in the shape of a readiness check.
func (o *Outage) Check(context.Context) error { return o.Err() }

// Wait records err as the n-th infrastructure failure in a row and sleeps
// the backoff for it; it reports false when ctx ended first.
func (o *Outage) Wait(ctx context.Context, n int, err error) bool {
	o.Failed(err)
	return clock.Sleep(ctx, o.backoff.Delay(n))
}
