// Package amqptest gives tests the local RabbitMQ (AMQP_URL, default
// amqp://guest:guest@localhost:5672/) with names of their own: each test
// gets a topology under a unique prefix, deleted when it ends, so tests run
// alongside each other and alongside `make run`.
package amqptest

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

// URL is the broker tests use.
func URL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@localhost:5672/"
}

// Topology returns the email topology under a prefix unique to t, with the
// given retry delays; its exchanges and queues are deleted when t ends.
func Topology(t testing.TB, delays ...time.Duration) rabbit.Topology {
	t.Helper()
	if len(delays) == 0 {
		delays = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	topo := rabbit.EmailTopology(delays).WithPrefix("test-" + hex.EncodeToString(b) + ".")
	t.Cleanup(func() { Delete(t, topo) })
	return topo
}

// Prefix returns a queue-name prefix unique to t, for a whole stack's
// email topology (default retry delays, at most 10); its exchanges and
// queues are deleted when t ends.
func Prefix(t testing.TB) string {
	t.Helper()
	delays := make([]time.Duration, 10)
	for i := range delays {
		delays[i] = time.Second
	}
	topo := Topology(t, delays...)
	return strings.TrimSuffix(topo.Exchange, "email")
}

// Conn returns a rabbit.Conn for topo, closed when t ends.
func Conn(t testing.TB, topo rabbit.Topology) *rabbit.Conn {
	t.Helper()
	c, err := rabbit.Dial(URL(), t.Name(), topo, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Delete removes topo's queues and exchanges.
func Delete(t testing.TB, topo rabbit.Topology) {
	conn, err := amqp.Dial(URL())
	if err != nil {
		t.Logf("amqptest: cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	defer ch.Close()
	for _, q := range topo.Queues() {
		_, _ = ch.QueueDelete(q, false, false, false)
	}
	for _, ex := range []string{topo.Exchange, topo.RetryExchange(), topo.DeadExchange()} {
		_ = ch.ExchangeDelete(ex, false, false)
	}
}

// Get takes one message from queue (auto-acked), waiting up to d.
func Get(t testing.TB, queue string, d time.Duration) (amqp.Delivery, bool) {
	t.Helper()
	ch, done := channel(t)
	defer done()
	deadline := time.Now().Add(d)
	for {
		m, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok || time.Now().After(deadline) {
			return m, ok
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Publish publishes body straight to exchange with key, as a stranger
// might.
func Publish(t testing.TB, exchange, key string, msg amqp.Publishing) {
	t.Helper()
	ch, done := channel(t)
	defer done()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm(exchange, key, false, false, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !dc.Wait() {
		t.Fatal("publish not confirmed")
	}
}

// DeleteQueue deletes one queue, as an operator might while services are
// connected.
func DeleteQueue(t testing.TB, queue string) {
	t.Helper()
	ch, done := channel(t)
	defer done()
	if _, err := ch.QueueDelete(queue, false, false, false); err != nil {
		t.Fatal(err)
	}
}

// channel opens a channel on a connection of its own; done closes both.
func channel(t testing.TB) (ch *amqp.Channel, done func()) {
	t.Helper()
	conn, err := amqp.Dial(URL())
	if err != nil {
		t.Fatal(err)
	}
	ch, err = conn.Channel()
	if err != nil {
		_ = conn.Close()
		t.Fatal(err)
	}
	return ch, func() { _ = conn.Close() }
}

// CloseConnections makes the broker close every connection whose client
// connection name starts with prefix, as `rabbitmqctl
// close_all_connections` would, but sparing everyone else's. It returns
// how many it closed.
func CloseConnections(t testing.TB, prefix string) int {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "list_connections", "-q", "pid", "client_properties").Output()
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		pid, props, ok := strings.Cut(line, "\t")
		if !ok || !strings.Contains(props, `{"connection_name","`+prefix) {
			continue
		}
		out, err := exec.Command("rabbitmqctl", "close_connection", pid, "test: closed by force").CombinedOutput()
		if err != nil {
			t.Logf("rabbitmqctl close_connection %s: %v: %s", pid, err, out)
			continue
		}
		n++
	}
	return n
}
