package rabbit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

// publishWithin is one Publish whose context ends after d: long enough for
// a batch of any size in these tests (milliseconds normally), short of the
// 5 s a return that nobody reads holds up the connection.
func publishWithin(t *testing.T, p *rabbit.Publisher, msgs []outbox.Message, d time.Duration) (int, *rabbit.ReturnedError) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	began := time.Now()
	n, err := p.Publish(ctx, msgs)
	if took := time.Since(began); took > d {
		t.Errorf("Publish took %s, past its %s deadline: returns unread held the connection up", took.Round(time.Second), d)
	}
	var re *rabbit.ReturnedError
	if err != nil && !errors.As(err, &re) {
		t.Fatalf("Publish = %d, %v; want returns reported", n, err)
	}
	return n, re
}

func ids(msgs []outbox.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.EventID.String()
	}
	return out
}

// More unroutable messages in one batch than a return buffer of 16 holds
// (the queue deleted behind the publisher's back): every one is reported
// returned, none counted published, promptly; once the topology is
// declared again they all go through.
func TestPublisherReportsEveryReturn(t *testing.T) {
	t.Parallel()
	topo := amqptest.Topology(t)
	conn := amqptest.Conn(t, topo)
	p := rabbit.NewPublisher(conn)
	t.Cleanup(p.Close)
	if err := conn.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	amqptest.DeleteQueue(t, topo.Queue)
	msgs := make([]outbox.Message, 40)
	for i := range msgs {
		msgs[i] = message(topo, fmt.Sprintf(`"m%d"`, i))
	}
	n, re := publishWithin(t, p, msgs, 10*time.Second)
	if n != 0 || re == nil || !slices.Equal(re.MessageIDs, ids(msgs)) {
		t.Fatalf("Publish = %d, %v; want 0 and all 40 returned, in order", n, re)
	}
	publishAll(t, p, msgs, len(msgs))
	for i := range msgs {
		if _, ok := amqptest.Get(t, topo.Queue, 5*time.Second); !ok {
			t.Fatalf("queue: %d of %d messages", i, len(msgs))
		}
	}
}

// A batch mixing routable messages with unroutable ones (to an exchange
// bound to no queue), more unroutable than a return buffer of 16: exactly
// the unroutable ones are reported returned, and only the routable ones
// before the first of them count as published.
func TestPublisherMixedBatchReturns(t *testing.T) {
	t.Parallel()
	topo := amqptest.Topology(t)
	nowhere := topo.Exchange + ".nowhere"
	declareExchange(t, nowhere)
	conn := amqptest.Conn(t, topo)
	p := rabbit.NewPublisher(conn)
	t.Cleanup(p.Close)
	msgs := make([]outbox.Message, 40)
	var unroutable []string
	for i := range msgs {
		msgs[i] = message(topo, fmt.Sprintf(`"m%d"`, i))
		if i >= 5 && i%2 == 1 {
			msgs[i].Topic = nowhere
			unroutable = append(unroutable, msgs[i].EventID.String())
		}
	}
	n, re := publishWithin(t, p, msgs, 10*time.Second)
	if n != 5 || re == nil || !slices.Equal(re.MessageIDs, unroutable) {
		t.Fatalf("Publish = %d, %v; want 5 published and the %d unroutable ones returned", n, re, len(unroutable))
	}
	// The routable ones all reached the queue (those after the first
	// return go again with the relay's next batch: at least once).
	for i := range len(msgs) - len(unroutable) {
		if _, ok := amqptest.Get(t, topo.Queue, 5*time.Second); !ok {
			t.Fatalf("queue: %d of %d routable messages", i, len(msgs)-len(unroutable))
		}
	}
	if m, ok := amqptest.Get(t, topo.Queue, 0); ok {
		t.Errorf("queue holds one more: %s", m.MessageId)
	}
}

// declareExchange declares a direct exchange bound to nothing, deleted
// when t ends.
func declareExchange(t *testing.T, name string) {
	t.Helper()
	c, err := amqp.Dial(amqptest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(name, amqp.ExchangeDirect, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := amqp.Dial(amqptest.URL())
		if err != nil {
			return
		}
		defer c.Close()
		if ch, err := c.Channel(); err == nil {
			_ = ch.ExchangeDelete(name, false, false)
		}
	})
}
