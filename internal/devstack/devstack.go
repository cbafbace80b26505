// Package devstack runs the whole system in one process for `make run`: the
// embedded Kafka broker when KAFKA_BROKERS is unset, the topics, and every
// service's Run side by side. A service failing stops the others.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/services/orders"
)

// EmbeddedAddr is where the embedded broker listens, as DESIGN says.
const EmbeddedAddr = "127.0.0.1:9092"

// DataDir holds the embedded broker's data (and later, mail files).
const DataDir = ".data"

// Options adjust the stack; the zero value is what `make run` runs.
type Options struct {
	KafkaAddr string               // the embedded broker's address; default EmbeddedAddr
	DataDir   string               // default DataDir
	Orders    func(*orders.Config) // adjusts orders' config after the environment's
	Logs      io.Writer            // default os.Stderr
}

// Run starts the stack and blocks until ctx is done, then stops every
// service and the broker; nothing accepted is lost (unpublished outbox rows
// wait in PostgreSQL for the next start).
func Run(ctx context.Context, out io.Writer, opts Options) error {
	if opts.KafkaAddr == "" {
		opts.KafkaAddr = EmbeddedAddr
	}
	if opts.DataDir == "" {
		opts.DataDir = DataDir
	}
	if opts.Logs == nil {
		opts.Logs = os.Stderr
	}
	env := config.FromEnv()
	level := env.LogLevel("LOG_LEVEL", "info")
	format := env.OneOf("LOG_FORMAT", "json", "json", "text")
	brokers := kafka.ParseBrokers(env.String("KAFKA_BROKERS", ""))
	if err := env.Err(); err != nil {
		return err
	}
	logger := func(service string) *slog.Logger { return config.NewLogger(opts.Logs, service, level, format) }
	log := logger("devstack")

	if len(brokers) == 0 {
		dir := filepath.Join(opts.DataDir, "kafka")
		b, err := kafka.StartEmbedded(opts.KafkaAddr, dir)
		if err != nil {
			return fmt.Errorf("%w (is another `make run` or a Kafka on %s running? set KAFKA_BROKERS to use it)", err, opts.KafkaAddr)
		}
		defer b.Close() // after the services stopped: persists its state
		brokers = b.Addrs()
		log.Info("embedded kafka broker started", "addr", brokers[0], "data", dir)
	}
	ordersCfg, err := orders.ConfigFromEnv()
	if err != nil {
		return err
	}
	ordersCfg.Brokers = brokers
	if opts.Orders != nil {
		opts.Orders(&ordersCfg)
	}

	g, gctx := errgroup.WithContext(ctx)
	// Not a precondition: with the broker down, orders still takes orders
	// and its relay publishes once the broker and its topics are there.
	g.Go(func() error { kafka.EnsureTopicsRetrying(gctx, brokers, log, kafka.Topics...); return nil })
	g.Go(func() error { return orders.Run(gctx, ordersCfg, logger("orders")) })

	printBanner(out, ordersCfg.HTTPAddr, brokers)
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped", "at", time.Now().Format(time.RFC3339))
	return nil
}

func printBanner(out io.Writer, ordersAddr string, brokers []string) {
	base := "localhost" + ordersAddr
	if host, port, err := net.SplitHostPort(ordersAddr); err == nil && host != "" && host != "0.0.0.0" && host != "::" {
		base = net.JoinHostPort(host, port)
	}
	fmt.Fprintf(out, `
Orderflow is running (Ctrl-C stops it).
  orders   http://%[1]s   (GET /healthz /readyz /metrics)
  kafka    %[2]v

Place an order:
  curl -si %[1]s/orders -H 'Content-Type: application/json' -d '{"customerId":"c-42","email":"ada@example.com","items":[{"sku":"book-1","quantity":2,"unitPriceCents":1250}],"currency":"EUR","paymentToken":"tok_visa"}'
Then follow it:
  curl -s %[1]s/orders/<id>

`, base, brokers)
}
