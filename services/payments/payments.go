// Package payments is the payments service: it consumes the "orders" and
// "warehouse" topics, charges each placed order through a fake gateway
// (fraud rule and payment tokens of docs/design.md), refunds a captured payment
// when the order is cancelled or out of stock, and announces every outcome
// on the topic "payments" through its outbox.
//
// Guarantees: at most one capture per order whatever is redelivered (the
// payment row is keyed by order id and written in the same transaction as
// the inbox row and the outbox event); a cancellation seen before the
// order's OrderPlaced is remembered, and that order is then never charged;
// a payment's status only moves forward (captured to refunded). The
// consumer hands payments whole batches of records (consumer.BatchHandler):
// a batch's effects are exactly those of its records applied one by one in
// offset order, also when one order has several records in it, and cost a
// handful of statements per batch rather than a few per record (consume.go,
// handler.handle).
package payments

import (
	"context"
	"embed"
	"errors"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/service"
)

// serviceName is the service's name in events (ce_source
// "orderflow/payments"), its consumer group and logs.
const serviceName = "payments"

// ErrNotFound: payments has no payment for the order.
var ErrNotFound = errors.New("payment not found")

//go:embed migrations/*.sql
var migrations embed.FS

// Config configures the service: the shared settings, and the fraud limit.
// Zero fields take the defaults of ConfigFromEnv.
type Config struct {
	service.Config
	FraudLimitCents int64 // orders above this fail with fraud_suspected; default 1,000,000
}

// Defaults.
const (
	DefaultHTTPAddr        = ":8081"
	DefaultFraudLimitCents = 1_000_000
)

func (c *Config) setDefaults() {
	c.SetDefaults(serviceName, DefaultHTTPAddr)
	if c.FraudLimitCents == 0 {
		c.FraudLimitCents = DefaultFraudLimitCents
	}
}

// ConfigFromEnv reads the shared variables (service.FromEnv: POSTGRES_URL,
// KAFKA_BROKERS, OUTBOX_RETENTION, PAYMENTS_HTTP_ADDR, default ":8081")
// and FRAUD_LIMIT_CENTS. The error is one line naming each bad variable.
func ConfigFromEnv() (Config, error) {
	e := config.FromEnv()
	cfg := Config{Config: service.FromEnv(e, serviceName, DefaultHTTPAddr)}
	cfg.FraudLimitCents = e.Int64("FRAUD_LIMIT_CENTS", DefaultFraudLimitCents)
	if cfg.FraudLimitCents <= 0 {
		e.Reject("FRAUD_LIMIT_CENTS", "must be positive")
	}
	if err := e.Err(); err != nil {
		return Config{}, err
	}
	cfg.setDefaults()
	return cfg, cfg.Validate()
}

// Validate reports the first bad field, named as its environment variable.
func (c Config) Validate() error {
	if c.FraudLimitCents <= 0 {
		return errors.New("FRAUD_LIMIT_CENTS: must be positive")
	}
	return c.Config.Validate()
}

// Migrate creates or updates the service's tables, its outbox and its inbox
// in the pool's database.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return service.Migrate(ctx, pool, serviceName, service.Sub(migrations, "migrations"))
}

// Run runs the service until ctx is done (see service.Run): it consumes
// the orders and warehouse topics, relays its outbox and serves
// GET /payments/{orderId}.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	return service.Run(ctx, cfg.Config, service.Spec{
		Migrations: service.Sub(migrations, "migrations"),
		Topics:     registry.Get(serviceName).Consumes,
		Emits:      registry.Get(serviceName).Emits,
		Events:     decoder.Events(),
		Setup: func(d service.Deps) (service.Parts, error) {
			h := &handler{outbox: d.Outbox, flaky: newFlakyGateway(), fraudLimitCents: cfg.FraudLimitCents}
			api := &api{pool: d.Pool, log: d.Log}
			return service.Parts{Batch: h.handle, Routes: api.routes}, nil
		},
	}, log)
}
