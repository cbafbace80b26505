package chaos

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

// maxRetryQueues bounds the probe for email.retry.N queues.
const maxRetryQueues = 32

// amqpTimeout bounds one call's RabbitMQ work: the connection is closed
// then, which ends any call still waiting on the broker.
const amqpTimeout = 20 * time.Second

// queueView is what RabbitMQ holds for the email service.
type queueView struct {
	dead     string         // the dead queue's name
	ready    map[string]int // work and retry queues → messages ready
	messages []amqpDead     // the dead queue's messages
}

// amqpDead is one message of the dead queue.
type amqpDead struct {
	messageID, cause string
	body             []byte
}

// readQueues reads the ready counts of the email work queue and its retry
// queues (email.retry.1, .2, ... for as many as exist), and every message
// of the dead queue without taking it: each is fetched unacked and goes
// back when the channel closes, as orderflowctl dlq list does. Passive
// declares only: the checker creates nothing.
func readQueues(ctx context.Context, url, prefix string) (*queueView, error) {
	if url == "" {
		return nil, errors.New("no AMQP URL in the topology")
	}
	topo := rabbit.EmailTopology(nil).WithPrefix(prefix)
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, amqpTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	v := &queueView{dead: topo.DeadQueue(), ready: map[string]int{}}

	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	q, err := ch.QueueDeclarePassive(topo.Queue, true, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", topo.Queue, err)
	}
	v.ready[topo.Queue] = q.Messages
	for n := 1; n <= maxRetryQueues; n++ {
		name := topo.RetryExchange() + "." + strconv.Itoa(n) // rabbit.Topology.RetryQueue(n)
		q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			break // the last retry queue was n-1; the broker closed the channel
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		v.ready[name] = q.Messages
	}
	_ = ch.Close()

	if v.messages, err = browseQueue(conn, topo.DeadQueue()); err != nil {
		return nil, err
	}
	return v, nil
}

// browse reads the messages in queue now without taking them.
func browseQueue(conn *amqp.Connection, queue string) ([]amqpDead, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	defer ch.Close() // gives back every message fetched
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", queue, err)
	}
	var out []amqpDead
	for range q.Messages { // those there now, not those parked meanwhile
		m, ok, err := ch.Get(queue, false)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", queue, err)
		}
		if !ok {
			break
		}
		out = append(out, amqpDead{messageID: m.MessageId, cause: fmt.Sprint(m.Headers[rabbit.HeaderError]), body: m.Body})
	}
	return out, nil
}
