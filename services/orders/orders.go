// Package orders is the orders service: it accepts orders over HTTP and
// announces each with an OrderPlaced event, written to its outbox in the
// same transaction as the order, and relayed to the Kafka topic "orders".
//
// Guarantees: an order is stored if and only if its OrderPlaced event is;
// invalid requests write nothing; one Idempotency-Key places at most one
// order, however many times and however concurrently it is sent.
package orders

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// serviceName is the service's name in events (ce_source "orderflow/orders"),
// timeline entries and logs.
const serviceName = "orders"

// Errors the service returns; the HTTP error writer maps them to statuses.
var (
	// ErrNotFound: no such order.
	ErrNotFound = errors.New("order not found")
	// ErrIdempotencyConflict: the Idempotency-Key was used for a different
	// request.
	ErrIdempotencyConflict = errors.New("idempotency key already used for a different request")
)

//go:embed migrations/*.sql
var migrations embed.FS

// Config configures the service. Zero fields take the defaults of
// ConfigFromEnv.
type Config struct {
	HTTPAddr        string        // listen address; default ":8080"
	PostgresURL     string        // the server; the service uses its database Database on it
	Database        string        // default "orderflow_orders"
	MaxConns        int32         // pool size; default 16
	Brokers         []string      // Kafka seed brokers
	OutboxRetention time.Duration // published outbox rows are kept this long; default 7 days
	ShutdownTimeout time.Duration // how long in-flight requests may finish after ctx is done; default 10s
}

// Defaults.
const (
	DefaultHTTPAddr        = ":8080"
	DefaultDatabase        = "orderflow_orders"
	DefaultBroker          = "127.0.0.1:9092" // where the dev stack's embedded broker listens
	DefaultOutboxRetention = 7 * 24 * time.Hour
	DefaultMaxConns        = 16 // pgx's default, max(4, CPUs), queues requests on a 2-core machine
	// DefaultShutdownTimeout leaves room in the 10 s a Ctrl-C may take for
	// the relay's last cursor update and closing the pool.
	DefaultShutdownTimeout = 7 * time.Second
)

func (c *Config) setDefaults() {
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.PostgresURL == "" {
		c.PostgresURL = postgres.DefaultURL
	}
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if len(c.Brokers) == 0 {
		c.Brokers = []string{DefaultBroker}
	}
	if c.OutboxRetention == 0 {
		c.OutboxRetention = DefaultOutboxRetention
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
}

// ConfigFromEnv reads the service's variables of DESIGN.md: POSTGRES_URL,
// KAFKA_BROKERS (empty: the dev stack's broker on 127.0.0.1:9092) and
// OUTBOX_RETENTION (a Go duration, or days such as "7d" or "1d12h"), plus
// ORDERS_HTTP_ADDR (default ":8080"), and validates them. The error is one
// line naming each bad variable.
func ConfigFromEnv() (Config, error) {
	e := config.FromEnv()
	cfg := Config{
		HTTPAddr:    e.String("ORDERS_HTTP_ADDR", DefaultHTTPAddr),
		PostgresURL: e.String("POSTGRES_URL", postgres.DefaultURL),
		Brokers:     kafka.ParseBrokers(e.String("KAFKA_BROKERS", "")),
	}
	cfg.OutboxRetention = e.Duration("OUTBOX_RETENTION", DefaultOutboxRetention)
	if cfg.OutboxRetention == 0 {
		e.Reject("OUTBOX_RETENTION", "must be positive (e.g. 7d, 36h)")
	}
	if err := e.Err(); err != nil {
		return Config{}, err
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// Validate reports the first bad field, named as its environment variable.
func (c Config) Validate() error {
	if c.HTTPAddr == "" {
		return errors.New("ORDERS_HTTP_ADDR: empty listen address")
	}
	if u, err := url.Parse(c.PostgresURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return errors.New("POSTGRES_URL: want postgres://user@host:port/db?sslmode=...")
	}
	if c.Database == "" {
		return errors.New("orders: empty database name")
	}
	if len(c.Brokers) == 0 {
		return errors.New("KAFKA_BROKERS: no brokers")
	}
	if c.OutboxRetention <= 0 {
		return errors.New("OUTBOX_RETENTION: must be positive")
	}
	if c.ShutdownTimeout < 0 {
		return errors.New("orders: negative shutdown timeout")
	}
	return nil
}

// LogValue masks the database password, so the config can be logged.
func (c Config) LogValue() slog.Value {
	pg := c.PostgresURL
	if u, err := url.Parse(pg); err == nil {
		pg = u.Redacted()
	}
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.String("postgres_url", pg),
		slog.String("database", c.Database),
		slog.Any("brokers", c.Brokers),
		slog.Duration("outbox_retention", c.OutboxRetention),
	)
}

// Migrate creates or updates the service's tables and its outbox table in
// the pool's database.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	if err := postgres.Migrate(ctx, pool, sub, "goose_orders"); err != nil {
		return fmt.Errorf("orders migrations: %w", err)
	}
	if err := outbox.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("outbox migrations: %w", err)
	}
	return nil
}

// Run runs the service until ctx is done: it creates and migrates its
// database, then serves HTTP and relays the outbox. After ctx is done it
// gives in-flight requests cfg.ShutdownTimeout to finish and returns once
// every goroutine it started has ended. It returns nil after a clean
// shutdown.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log.Info("starting", "config", cfg)

	dbURL, err := postgres.EnsureDatabase(ctx, cfg.PostgresURL, cfg.Database)
	if err != nil {
		return err
	}
	pool, err := postgres.Connect(ctx, dbURL, cfg.MaxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := Migrate(ctx, pool); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	ob := outbox.New(pool, outbox.Config{
		Service:    serviceName,
		Brokers:    cfg.Brokers,
		Retention:  cfg.OutboxRetention,
		Registerer: reg,
	}, log)
	srv := NewServer(pool, ob, reg, log)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := ob.Run(gctx); err != nil && gctx.Err() == nil {
			return fmt.Errorf("outbox relay: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		err := httpserver.Serve(gctx, cfg.HTTPAddr, srv, log, httpserver.WithShutdownTimeout(cfg.ShutdownTimeout))
		if err != nil {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
