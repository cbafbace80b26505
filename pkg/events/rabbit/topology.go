// Package rabbit is Orderflow's RabbitMQ side: a work queue's topology
// (exchange, quorum queue, TTL retry queues, dead-letter queue), a
// connection that comes back after it drops (amqp091-go does not
// reconnect), an outbox.Publisher with publisher confirms, and a Worker
// that acks a message only once it was handled, scheduled for a retry or
// parked.
package rabbit

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Topology names a work queue and its retry and dead-letter plumbing. With
// Exchange "email", Queue "email.send" and RoutingKey "send" (docs/design.md):
//
//	exchange email (direct)       --send-->          queue email.send
//	exchange email.retry (direct) --email.retry.N--> queue email.retry.N
//	    (TTL RetryDelays[N-1], then dead-lettered back to email/send)
//	exchange email.dead (direct)  --dead-->          queue email.send.dead
//
// Every queue is a durable quorum queue. Dead-lettering is the broker's
// at-least-once strategy (x-dead-letter-strategy=at-least-once with
// x-overflow=reject-publish, RabbitMQ 3.10+): a message expiring from a
// retry queue, or given up on by email.send's delivery limit, stays in its
// queue until the target queue confirmed it, instead of being dropped if
// that hop fails.
type Topology struct {
	Exchange   string
	Queue      string
	RoutingKey string
	// RetryDelays are the waits before each retry: a message that failed
	// its attempt n is retried after RetryDelays[n-1], or the last one.
	RetryDelays []time.Duration
	// DeliveryLimit is how many times email.send hands one message out
	// before dead-lettering it (quorum x-delivery-limit): a message that
	// crashes its workers cannot loop forever. Default 20.
	DeliveryLimit int
}

// EmailTopology is docs/design.md's email topology with the given retry delays.
func EmailTopology(delays []time.Duration) Topology {
	return Topology{Exchange: "email", Queue: "email.send", RoutingKey: "send", RetryDelays: delays}
}

// WithPrefix returns t with every name prefixed, so tests and side-by-side
// stacks can share a broker.
func (t Topology) WithPrefix(prefix string) Topology {
	t.Exchange, t.Queue = prefix+t.Exchange, prefix+t.Queue
	return t
}

// RetryExchange routes failed messages to their retry queue.
func (t Topology) RetryExchange() string { return t.Exchange + ".retry" }

// RetryQueue is the queue of retries after attempt n (1-based), capped at
// the last delay.
func (t Topology) RetryQueue(n int) string {
	n = min(max(n, 1), len(t.RetryDelays))
	return t.Exchange + ".retry." + strconv.Itoa(n)
}

// DeadExchange routes parked messages to DeadQueue.
func (t Topology) DeadExchange() string { return t.Exchange + ".dead" }

// DeadQueue holds the messages given up on.
func (t Topology) DeadQueue() string { return t.Queue + ".dead" }

// deadKey is the routing key into DeadQueue.
const deadKey = "dead"

// Queues lists every queue of the topology: the work queue, the retry
// queues in order, the dead queue.
func (t Topology) Queues() []string {
	qs := []string{t.Queue}
	for i := range t.RetryDelays {
		qs = append(qs, t.RetryQueue(i+1))
	}
	return append(qs, t.DeadQueue())
}

// Validate reports a topology that cannot be declared.
func (t Topology) Validate() error {
	switch {
	case t.Exchange == "" || t.Queue == "" || t.RoutingKey == "":
		return errors.New("rabbit: topology needs Exchange, Queue and RoutingKey")
	case len(t.RetryDelays) == 0:
		return errors.New("rabbit: topology needs at least one retry delay")
	}
	for _, d := range t.RetryDelays {
		if d < time.Millisecond {
			return fmt.Errorf("rabbit: retry delay %v is under a millisecond", d)
		}
	}
	return nil
}

// Declare declares the topology on ch. It is idempotent: declaring what
// exists with the same settings changes nothing; different settings on an
// existing queue fail with the broker's PRECONDITION_FAILED (and close ch).
func (t Topology) Declare(ch *amqp.Channel) error {
	if err := t.Validate(); err != nil {
		return err
	}
	for _, ex := range []string{t.Exchange, t.RetryExchange(), t.DeadExchange()} {
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
			return fmt.Errorf("rabbit: declare exchange %s: %w", ex, err)
		}
	}
	limit := t.DeliveryLimit
	if limit <= 0 {
		limit = 20
	}
	queues := []struct {
		name, exchange, key string
		args                amqp.Table
	}{
		{t.Queue, t.Exchange, t.RoutingKey, deadLettered(t.DeadExchange(), deadKey, amqp.Table{"x-delivery-limit": int64(limit)})},
		{t.DeadQueue(), t.DeadExchange(), deadKey, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}},
	}
	for i, d := range t.RetryDelays {
		name := t.RetryQueue(i + 1)
		queues = append(queues, struct {
			name, exchange, key string
			args                amqp.Table
		}{name, t.RetryExchange(), name, deadLettered(t.Exchange, t.RoutingKey, amqp.Table{"x-message-ttl": d.Milliseconds()})})
	}
	for _, q := range queues {
		if _, err := ch.QueueDeclare(q.name, true, false, false, false, q.args); err != nil {
			return fmt.Errorf("rabbit: declare queue %s: %w", q.name, err)
		}
		if err := ch.QueueBind(q.name, q.key, q.exchange, false, nil); err != nil {
			return fmt.Errorf("rabbit: bind queue %s: %w", q.name, err)
		}
	}
	return nil
}

// deadLettered is a quorum queue's arguments dead-lettering to exchange
// with key, at least once.
func deadLettered(exchange, key string, extra amqp.Table) amqp.Table {
	args := amqp.Table{
		amqp.QueueTypeArg:           amqp.QueueTypeQuorum,
		"x-dead-letter-exchange":    exchange,
		"x-dead-letter-routing-key": key,
		"x-dead-letter-strategy":    "at-least-once",
		amqp.QueueOverflowArg:       amqp.QueueOverflowRejectPublish,
	}
	for k, v := range extra {
		args[k] = v
	}
	return args
}
