package rabbit

import (
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// returnWatch reads one channel's returned messages (mandatory publishes
// that reached no queue) for the channel's whole life and keeps them by
// message id until its owner takes them.
//
// Why a goroutine: amqp091-go hands each basic.return to the NotifyReturn
// listeners from the connection's one reader goroutine, waiting up to 5 s
// for a listener whose buffer is full and then dropping the return
// (notifyAll in its channel.go). Read only while a publisher awaited its
// confirms, a 16-slot buffer overflowed by a burst of returns stalled every
// channel of the connection for 5 s a return (a batch of 40 unroutable
// messages took 20 s to fail), and a dropped return let its message
// count as confirmed. This listener is always read.
//
// Attribution: RabbitMQ sends a mandatory message's basic.return before its
// basic.ack on the same channel, and the library dispatches both in that
// order, so once a publish's confirm is in, its return (if it had one) was
// handed to this watch; sync makes sure it was also recorded. Messages
// are told apart by message id: an owner has at most one publish of an id
// in flight on the channel (a batch's are distinct; the worker's copies go
// one at a time).
type returnWatch struct {
	in    chan amqp.Return
	flush chan chan struct{}
	done  chan struct{} // closed once the channel closed and in was read out

	mu  sync.Mutex
	got map[string]amqp.Return // by message id
}

// watchReturns starts watching ch's returns; the watch ends when ch closes
// (wait for it after closing ch).
func watchReturns(ch *amqp.Channel) *returnWatch {
	w := &returnWatch{
		in:    ch.NotifyReturn(make(chan amqp.Return, 64)),
		flush: make(chan chan struct{}),
		done:  make(chan struct{}),
		got:   map[string]amqp.Return{},
	}
	go w.run()
	return w
}

func (w *returnWatch) run() {
	defer close(w.done)
	for {
		select {
		case r, ok := <-w.in:
			if !ok {
				return // the channel closed
			}
			w.record(r)
		case reply := <-w.flush:
			// Returns handed over before a confirm are received or in the
			// buffer; only this goroutine receives, so len does not lie.
			for len(w.in) > 0 {
				w.record(<-w.in)
			}
			close(reply)
		}
	}
}

func (w *returnWatch) record(r amqp.Return) {
	r.Body = nil // only the route and properties are reported
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got[r.MessageId] = r
}

// sync returns once every return the library handed over so far is
// recorded: call it after a publish's confirm, before take.
func (w *returnWatch) sync() {
	reply := make(chan struct{})
	select {
	case w.flush <- reply:
		<-reply
	case <-w.done: // the channel closed: all it returned is recorded
	}
}

// take removes and returns the return recorded for messageID, if any.
func (w *returnWatch) take(messageID string) (amqp.Return, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.got[messageID]
	delete(w.got, messageID)
	return r, ok
}

// forget drops what was recorded and not taken (returns of publishes whose
// wait was cut short), so it neither piles up nor is taken for a later
// publish's.
func (w *returnWatch) forget() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.got)
}

// wait waits for the watch to end; the channel must be closed or closing.
func (w *returnWatch) wait() { <-w.done }

// ReturnedError reports the messages of a batch that the broker returned:
// published mandatory, they reached no queue (a queue or binding deleted
// behind the connection's back) and are not counted as published.
type ReturnedError struct {
	MessageIDs []string    // in publish order
	First      amqp.Return // the first one's reply and route
}

func (e *ReturnedError) Error() string {
	r := e.First
	return fmt.Sprintf("rabbit: %d message(s) returned unroutable (%d %s), first %s: no queue bound to exchange %s for %q",
		len(e.MessageIDs), r.ReplyCode, r.ReplyText, r.MessageId, r.Exchange, r.RoutingKey)
}
