// Package payments is the payments service: it consumes the "orders" and
// "warehouse" topics, charges each placed order through a fake gateway
// (fraud rule and payment tokens of DESIGN.md), refunds a captured payment
// when the order is cancelled or out of stock, and announces every outcome
// on the topic "payments" through its outbox.
//
// Guarantees: at most one capture per order whatever is redelivered (the
// payment row is keyed by order id and written in the same transaction as
// the inbox row and the outbox event); a cancellation seen before the
// order's OrderPlaced is remembered, and that order is then never charged.
package payments

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
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/inbox"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// serviceName is the service's name in events (ce_source
// "orderflow/payments"), its consumer group and logs.
const serviceName = "payments"

// ErrNotFound: payments has no payment for the order.
var ErrNotFound = errors.New("payment not found")

//go:embed migrations/*.sql
var migrations embed.FS

// Config configures the service. Zero fields take the defaults of
// ConfigFromEnv.
type Config struct {
	HTTPAddr        string        // listen address; default ":8081"
	PostgresURL     string        // the server; the service uses its database Database on it
	Database        string        // default "orderflow_payments"
	MaxConns        int32         // pool size; default 16
	Brokers         []string      // Kafka seed brokers
	FraudLimitCents int64         // orders above this fail with fraud_suspected; default 1,000,000
	OutboxRetention time.Duration // published outbox rows are kept this long; default 7 days
	ShutdownTimeout time.Duration // how long in-flight requests may finish after ctx is done; default 7s

	// RetryBackoff is the consumer's first retry backoff (consumer.Config
	// BaseBackoff); zero takes the consumer's default. Tests shorten it.
	RetryBackoff time.Duration
}

// Defaults.
const (
	DefaultHTTPAddr        = ":8081"
	DefaultDatabase        = "orderflow_payments"
	DefaultBroker          = "127.0.0.1:9092" // where the dev stack's embedded broker listens
	DefaultFraudLimitCents = 1_000_000
	DefaultOutboxRetention = 7 * 24 * time.Hour
	DefaultMaxConns        = 16
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
	if c.FraudLimitCents == 0 {
		c.FraudLimitCents = DefaultFraudLimitCents
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
// KAFKA_BROKERS (empty: the dev stack's broker on 127.0.0.1:9092),
// FRAUD_LIMIT_CENTS and OUTBOX_RETENTION, plus PAYMENTS_HTTP_ADDR (default
// ":8081"), and validates them. The error is one line naming each bad
// variable.
func ConfigFromEnv() (Config, error) {
	e := config.FromEnv()
	cfg := Config{
		HTTPAddr:    e.String("PAYMENTS_HTTP_ADDR", DefaultHTTPAddr),
		PostgresURL: e.String("POSTGRES_URL", postgres.DefaultURL),
		Brokers:     kafka.ParseBrokers(e.String("KAFKA_BROKERS", "")),
	}
	cfg.FraudLimitCents = e.Int64("FRAUD_LIMIT_CENTS", DefaultFraudLimitCents)
	if cfg.FraudLimitCents <= 0 {
		e.Reject("FRAUD_LIMIT_CENTS", "must be positive")
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
		return errors.New("PAYMENTS_HTTP_ADDR: empty listen address")
	}
	if u, err := url.Parse(c.PostgresURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return errors.New("POSTGRES_URL: want postgres://user@host:port/db?sslmode=...")
	}
	if c.Database == "" {
		return errors.New("payments: empty database name")
	}
	if len(c.Brokers) == 0 {
		return errors.New("KAFKA_BROKERS: no brokers")
	}
	if c.FraudLimitCents <= 0 {
		return errors.New("FRAUD_LIMIT_CENTS: must be positive")
	}
	if c.OutboxRetention <= 0 {
		return errors.New("OUTBOX_RETENTION: must be positive")
	}
	if c.ShutdownTimeout < 0 || c.RetryBackoff < 0 {
		return errors.New("payments: negative shutdown timeout or retry backoff")
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
		slog.Int64("fraud_limit_cents", c.FraudLimitCents),
		slog.Duration("outbox_retention", c.OutboxRetention),
	)
}

// Migrate creates or updates the service's tables, its outbox and its inbox
// in the pool's database.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	if err := postgres.Migrate(ctx, pool, sub, "goose_payments"); err != nil {
		return fmt.Errorf("payments migrations: %w", err)
	}
	if err := outbox.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("outbox migrations: %w", err)
	}
	if err := inbox.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("inbox migrations: %w", err)
	}
	return nil
}

// Run runs the service until ctx is done: it creates and migrates its
// database, then consumes orders and warehouse events, relays its outbox
// and serves HTTP. It returns once every goroutine it started has ended,
// nil after a clean shutdown.
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
	h := &handler{pool: pool, outbox: ob, fraudLimitCents: cfg.FraudLimitCents, log: log}
	runner, err := consumer.New(consumer.Config{
		Service:     serviceName,
		Brokers:     cfg.Brokers,
		Topics:      []string{contract.TopicOrders, contract.TopicWarehouse},
		Handler:     h.handle,
		Pool:        pool,
		BaseBackoff: cfg.RetryBackoff,
		Registerer:  reg,
	}, log)
	if err != nil {
		return err
	}
	srv := NewServer(pool, ob, runner, reg, log)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := ob.Run(gctx); err != nil && gctx.Err() == nil {
			return fmt.Errorf("outbox relay: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := runner.Run(gctx); err != nil && gctx.Err() == nil {
			return fmt.Errorf("consumer: %w", err)
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
