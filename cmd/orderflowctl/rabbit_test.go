package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

// orderflowctl rabbit bootstrap makes the email service's user, which may
// declare and use the email topology and nothing else, and run again
// changes nothing.
func TestRabbitBootstrap(t *testing.T) {
	if err := exec.Command("rabbitmqctl", "list_users").Run(); err != nil {
		t.Skipf("needs rabbitmqctl on the broker's host: %v", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := hex.EncodeToString(b)
	user, vhost, prefix := "email-"+tag, "orderflow-"+tag, "t"+tag+"."
	t.Cleanup(func() {
		_ = exec.Command("rabbitmqctl", "delete_user", user).Run()
		_ = exec.Command("rabbitmqctl", "delete_vhost", vhost).Run()
	})
	amqpURL := "amqp://" + user + ":pw-" + tag + "@localhost:5672/" + vhost
	t.Setenv("AMQP_URL", amqpURL)
	t.Setenv("EMAIL_QUEUE_PREFIX", prefix)
	t.Setenv("RABBITMQCTL", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for range 2 {
		var out bytes.Buffer
		if err := run(ctx, []string{"rabbit", "bootstrap"}, &out, time.Now()); err != nil {
			t.Fatalf("rabbit bootstrap: %v\n%s", err, out.String())
		}
		if strings.Contains(out.String(), "pw-"+tag) {
			t.Errorf("the output shows the password: %s", out.String())
		}
	}

	topo := rabbit.EmailTopology([]time.Duration{time.Second}).WithPrefix(prefix)
	c, err := rabbit.Dial(amqpURL, t.Name(), topo, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("the email user declaring its topology: %v", err)
	}
	defer c.Close()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, name := range []string{"orders.audit", "email", prefix + "emailx"} {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		_, err = ch.QueueDeclare(name, false, true, false, false, nil)
		var aerr *amqp.Error
		if !errors.As(err, &aerr) || aerr.Code != amqp.AccessRefused {
			t.Errorf("the email user declaring queue %q: %v, want ACCESS_REFUSED", name, err)
		}
	}
}
