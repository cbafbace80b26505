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

// Run starts the stack and blocks until ctx is done, then stops every
// service and the broker; nothing accepted is lost (unpublished outbox rows
// wait in PostgreSQL for the next start).
func Run(ctx context.Context, out io.Writer) error {
	env := config.FromEnv()
	level := env.LogLevel("LOG_LEVEL", "info")
	format := env.OneOf("LOG_FORMAT", "json", "json", "text")
	brokers := kafka.ParseBrokers(env.String("KAFKA_BROKERS", ""))
	if err := env.Err(); err != nil {
		return err
	}
	logger := func(service string) *slog.Logger { return config.NewLogger(os.Stderr, service, level, format) }
	log := logger("devstack")

	if len(brokers) == 0 {
		dir := filepath.Join(DataDir, "kafka")
		b, err := kafka.StartEmbedded(EmbeddedAddr, dir)
		if err != nil {
			return fmt.Errorf("%w (is another `make run` or a Kafka on 9092 running? set KAFKA_BROKERS to use it)", err)
		}
		defer b.Close() // after the services stopped: persists its state
		brokers = b.Addrs()
		log.Info("embedded kafka broker started", "addr", EmbeddedAddr, "data", dir)
	}
	ordersCfg, err := orders.ConfigFromEnv()
	if err != nil {
		return err
	}
	ordersCfg.Brokers = brokers

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
	fmt.Fprintf(out, `
Orderflow is running (Ctrl-C stops it).
  orders   http://localhost%s   (GET /healthz /readyz /metrics)
  kafka    %v

Place an order:
  curl -si localhost%s/orders -H 'Content-Type: application/json' -d '{"customerId":"c-42","email":"ada@example.com","items":[{"sku":"book-1","quantity":2,"unitPriceCents":1250}],"currency":"EUR","paymentToken":"tok_visa"}'
Then follow it:
  curl -s localhost%s/orders/<id>

`, ordersAddr, brokers, ordersAddr, ordersAddr)
}
