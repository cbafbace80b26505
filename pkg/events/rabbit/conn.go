package rabbit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/pkg/events/internal/clock"
)

// Conn is a RabbitMQ connection that comes back: amqp091-go's connection
// is gone for good once it closes, so Conn dials a new one, with backoff,
// the next time a channel is asked for, and declares the topology on it
// before handing anything out. Safe for concurrent use.
type Conn struct {
	url  string
	name string
	topo Topology
	log  *slog.Logger

	mu   sync.Mutex
	conn *amqp.Connection
	raw  net.Conn // conn's socket, closed by bounded when a call hangs
	gen  int      // connections dialled so far, to log reconnects
}

// ErrTopologyMismatch: a queue or exchange exists with other settings than
// the topology's (e.g. another retry delay: RabbitMQ refuses to redeclare a
// queue with another x-message-ttl). Delete it, or change it back.
var ErrTopologyMismatch = errors.New("rabbit: the broker's queues differ from the topology (delete them to redeclare, or restore the settings)")

// Dial returns a Conn to url (amqp://user:pass@host:port/vhost) named name
// in the broker's connection list. It does not connect yet.
func Dial(url, name string, topo Topology, log *slog.Logger) (*Conn, error) {
	if err := topo.Validate(); err != nil {
		return nil, err
	}
	if _, err := amqp.ParseURI(url); err != nil {
		return nil, fmt.Errorf("rabbit: AMQP URL: %w", err)
	}
	return &Conn{url: url, name: name, topo: topo, log: log.With("component", "rabbit")}, nil
}

// Topology is what the connection declares.
func (c *Conn) Topology() Topology { return c.topo }

// Channel opens a channel, connecting first (retrying with backoff until
// ctx is done) when there is no open connection.
func (c *Conn) Channel(ctx context.Context) (*amqp.Channel, error) {
	wait := 100 * time.Millisecond
	for {
		conn, err := c.connection()
		if err == nil {
			var ch *amqp.Channel
			if err = c.Bounded(func() (err error) { ch, err = conn.Channel(); return err }); err == nil {
				return ch, nil
			}
			err = fmt.Errorf("rabbit: open channel: %w", err)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, ErrTopologyMismatch) {
			return nil, err // retrying cannot fix it
		}
		c.log.Warn("rabbitmq unavailable; will retry", "err", err, "retry_in", wait)
		if !clock.Sleep(ctx, rand.N(wait)+wait/2) {
			return nil, ctx.Err()
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// connection returns the open connection, dialing and declaring the
// topology when there is none.
func (c *Conn) connection() (*amqp.Connection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && !c.conn.IsClosed() {
		return c.conn, nil
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(c.name)
	var raw net.Conn
	dial := amqp.DefaultDial(10 * time.Second)
	conn, err := amqp.DialConfig(c.url, amqp.Config{
		Heartbeat: 10 * time.Second, Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			nc, err := dial(network, addr)
			raw = nc
			return nc, err
		},
	})
	if err != nil {
		return nil, fmt.Errorf("rabbit: dial: %w", err)
	}
	c.conn, c.raw = conn, raw
	err = c.bounded(func() error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		defer ch.Close()
		return c.topo.Declare(ch)
	})
	if err != nil {
		_ = raw.Close()
		c.conn, c.raw = nil, nil
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
			return nil, fmt.Errorf("%w: %w", ErrTopologyMismatch, err)
		}
		return nil, err
	}
	if c.gen > 0 {
		c.log.Info("rabbitmq reconnected", "connection", c.name)
	}
	c.gen++
	return conn, nil
}

// callTimeout bounds a synchronous AMQP call (see bounded).
const callTimeout = 15 * time.Second

// bounded runs fn, a synchronous call on the current connection, and
// closes that connection's socket if fn has not returned within
// callTimeout. amqp091-go can wait forever in a call made while its
// connection is being closed (rabbitmq/amqp091-go#32); closing the socket
// ends the wait with an error, and the next Channel dials again. The
// caller holds c.mu.
func (c *Conn) bounded(fn func() error) error {
	raw := c.raw
	t := time.AfterFunc(callTimeout, func() {
		if raw != nil {
			c.log.Warn("rabbitmq call hung; dropping the connection", "timeout", callTimeout)
			_ = raw.Close()
		}
	})
	defer t.Stop()
	return fn()
}

// Bounded is bounded for calls on this Conn's channels (Qos, Consume,
// Confirm, Close).
func (c *Conn) Bounded(fn func() error) error {
	c.mu.Lock()
	raw := c.raw
	c.mu.Unlock()
	wd := &Conn{raw: raw, log: c.log}
	return wd.bounded(fn)
}

// Ready reports whether the broker answers (connecting if needed).
func (c *Conn) Ready(context.Context) error {
	_, err := c.connection()
	return err
}

// Close closes the current connection; a later Channel dials again.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.bounded(c.conn.Close)
	c.conn, c.raw = nil, nil
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}

// QueueDepth is how many ready messages a queue holds (passive declare).
// It returns when ctx is done even if the broker does not answer (a
// scrape must not hang); the call itself is cut by the watchdog.
func (c *Conn) QueueDepth(ctx context.Context, queue string) (int, error) {
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		ch, err := c.connectedChannel()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Bounded(ch.Close)
		var q amqp.Queue
		err = c.Bounded(func() (err error) {
			q, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
			return err
		})
		if err != nil {
			err = fmt.Errorf("rabbit: inspect %s: %w", queue, err)
		}
		done <- result{q.Messages, err}
	}()
	select {
	case r := <-done:
		return r.n, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("rabbit: inspect %s: %w", queue, ctx.Err())
	}
}

// Redeclare declares the topology again on the current connection. A
// message came back unroutable: a queue or binding was deleted behind the
// connection's back, and declaring only on connect would never restore it.
func (c *Conn) Redeclare(ctx context.Context) error {
	ch, err := c.Channel(ctx)
	if err != nil {
		return err
	}
	defer c.Bounded(ch.Close)
	if err := c.Bounded(func() error { return c.topo.Declare(ch) }); err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
			return fmt.Errorf("%w: %w", ErrTopologyMismatch, err)
		}
		return fmt.Errorf("rabbit: declare topology: %w", err)
	}
	c.log.Warn("rabbitmq topology declared again after an unroutable message")
	return nil
}

// connectedChannel is Channel without waiting: one attempt.
func (c *Conn) connectedChannel() (*amqp.Channel, error) {
	conn, err := c.connection()
	if err != nil {
		return nil, err
	}
	return conn.Channel()
}
