package rabbit_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

// AMQP over TLS is a URL: amqps:// verifies the broker against the
// system's roots, or against the CA named by the URL's cacertfile, with
// server_name_indication the name to verify (RabbitMQ's URI spec, which
// amqp091-go reads; certfile and keyfile add a client certificate). Here a
// TLS listener with a certificate of its own stands in front of the local
// RabbitMQ: with its CA the connection declares the topology and
// publishes; without it, it is refused.
func TestAMQPSWithThePrivateCA(t *testing.T) {
	t.Parallel()
	server, caPEM, _, err := kafka.SelfSigned() // localhost and 127.0.0.1
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	plain, err := url.Parse(amqptest.URL())
	if err != nil {
		t.Fatal(err)
	}
	front := tlsFront(t, server, plain.Host)
	secure := *plain
	secure.Scheme, secure.Host = "amqps", front
	topo := amqptest.Topology(t)

	q := secure.Query()
	q.Set("cacertfile", ca)
	q.Set("server_name_indication", "localhost")
	secure.RawQuery = q.Encode()
	c, err := rabbit.Dial(secure.String(), t.Name(), topo, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pub := rabbit.NewPublisher(c)
	defer pub.Close()
	if _, err := pub.Publish(ctx, []outbox.Message{message(topo, "over TLS")}); err != nil {
		t.Fatalf("publish over amqps with the CA: %v", err)
	}

	secure.RawQuery = ""
	var logs bytes.Buffer
	untrusted, err := rabbit.Dial(secure.String(), t.Name(), topo, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer untrusted.Close()
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if ch, err := untrusted.Channel(ctx); err == nil {
		ch.Close()
		t.Fatal("amqps without the CA connected: the certificate was not verified")
	}
	if !strings.Contains(logs.String(), "certificate") {
		t.Errorf("the refusal does not name the certificate:\n%s", logs.String())
	}
}

// tlsFront accepts TLS connections with cfg and forwards each, decrypted,
// to backend, until t ends; it returns its address.
func tlsFront(t *testing.T, cfg *tls.Config, backend string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer in.Close()
				out, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(out, in); out.Close() }()
				_, _ = io.Copy(in, out)
			})
		}
	})
	return ln.Addr().String()
}
