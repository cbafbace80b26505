// Package warehouse is the warehouse service: it consumes the "payments"
// and "orders" topics, reserves the stock of every captured order, ships
// each pick WAREHOUSE_SHIP_DELAY after it was scheduled through a durable
// timer (package timer), cancels the pick of a cancelled order, and
// announces every outcome on the topic "warehouse" through its outbox
// (StockUnavailable, PickScheduled, OrderShipped, PickCancelled).
//
// Guarantees:
//   - One pick per order, whatever is redelivered: the shipment row is keyed
//     by order id and written in the same transaction as the inbox row, the
//     stock change, the ship timer and the outbox event.
//   - No oversell: an order's items are reserved all or nothing under the
//     locks of their stock rows, so of two orders for the last unit exactly
//     one gets it, and available never goes below zero. The consumer hands
//     over batches of records: a batch locks the stock rows of all its
//     orders at once, in SKU (byte) order, so concurrent batches never
//     deadlock (see lockStock), and decides its orders in offset order
//     against the units read under those locks, so a batch ends as its
//     records applied one by one would (see consume.go).
//   - A pick ships at most once, and not at all once cancelled: the ship
//     timer fires at most once, and it and a cancellation serialize on the
//     order's lock. Shipping touches only the order's own rows, never a
//     stock row. A restart neither loses nor repeats a pending shipment.
//   - A cancellation seen before the order's PaymentCaptured is remembered:
//     the late capture then reserves nothing, schedules nothing and emits
//     nothing. A cancellation after shipping changes nothing.
//
// Not guaranteed: shipping exactly WAREHOUSE_SHIP_DELAY after scheduling
// (the timer fires at or after its due time, see package timer); stock
// levels kept in step with anything but this service's own decisions and
// PUT /inventory (there is no real warehouse behind it). A SKU's first
// sighting gives it WAREHOUSE_DEFAULT_STOCK units, so a SKU that was never
// seeded never runs out until that many are sold.
package warehouse

import (
	"context"
	"embed"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/timer"
	"github.com/orderflow/orderflow/pkg/service"
)

// serviceName is the service's name in events (ce_source
// "orderflow/warehouse"), its consumer group and logs.
const serviceName = "warehouse"

// ErrNotFound: warehouse has no shipment for the order.
var ErrNotFound = errors.New("shipment not found")

//go:embed migrations/*.sql
var migrations embed.FS

// Config configures the service: the shared settings, the stock a SKU
// starts with and the delay before a pick ships.
type Config struct {
	service.Config
	// DefaultStock is the number of units a SKU starts with when it is first
	// seen, unless it was seeded with PUT /inventory/{sku}. Zero is a valid
	// value (nothing is in stock until seeded), so it has no default here:
	// ConfigFromEnv sets DefaultStockUnits unless told otherwise.
	DefaultStock int64
	// ShipDelay is how long after it is scheduled a pick ships; default 2s.
	ShipDelay time.Duration
}

// Defaults.
const (
	DefaultHTTPAddr   = ":8082"
	DefaultStockUnits = 1000
	DefaultShipDelay  = 2 * time.Second
)

func (c *Config) setDefaults() {
	c.SetDefaults(serviceName, DefaultHTTPAddr)
	if c.ShipDelay == 0 {
		c.ShipDelay = DefaultShipDelay
	}
}

// ConfigFromEnv reads the shared variables (service.FromEnv: POSTGRES_URL,
// KAFKA_BROKERS, OUTBOX_RETENTION, WAREHOUSE_HTTP_ADDR, default ":8082"),
// WAREHOUSE_DEFAULT_STOCK (default 1000, at least 0) and
// WAREHOUSE_SHIP_DELAY (a Go duration, default 2s, positive). The error is
// one line naming each bad variable.
func ConfigFromEnv() (Config, error) {
	e := config.FromEnv()
	cfg := Config{Config: service.FromEnv(e, serviceName, DefaultHTTPAddr)}
	cfg.DefaultStock = e.Int64("WAREHOUSE_DEFAULT_STOCK", DefaultStockUnits)
	if cfg.DefaultStock < 0 {
		e.Reject("WAREHOUSE_DEFAULT_STOCK", "must not be negative")
	}
	cfg.ShipDelay = e.Duration("WAREHOUSE_SHIP_DELAY", DefaultShipDelay)
	if cfg.ShipDelay == 0 {
		e.Reject("WAREHOUSE_SHIP_DELAY", "must be positive (e.g. 2s, 500ms)")
	}
	if err := e.Err(); err != nil {
		return Config{}, err
	}
	cfg.setDefaults()
	return cfg, cfg.Validate()
}

// Validate reports the first bad field, named as its environment variable.
func (c Config) Validate() error {
	if c.DefaultStock < 0 {
		return errors.New("WAREHOUSE_DEFAULT_STOCK: must not be negative")
	}
	if c.ShipDelay <= 0 {
		return errors.New("WAREHOUSE_SHIP_DELAY: must be positive")
	}
	return c.Config.Validate()
}

// Migrate creates or updates the service's tables, its outbox, its inbox
// and its timers in the pool's database.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return service.Migrate(ctx, pool, serviceName, service.Sub(migrations, "migrations"))
}

// Run runs the service until ctx is done (see service.Run): it consumes
// the payments and orders topics, fires the ship timers, relays its outbox
// and serves GET /shipments/{orderId}, GET /inventory/{sku} and
// PUT /inventory/{sku}.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log.Info("warehouse settings", "default_stock", cfg.DefaultStock, "ship_delay", cfg.ShipDelay)
	return service.Run(ctx, cfg.Config, service.Spec{
		Migrations: service.Sub(migrations, "migrations"),
		Topics:     registry.Get(serviceName).Consumes,
		Emits:      registry.Get(serviceName).Emits,
		Events:     decoder.Events(),
		Setup: func(d service.Deps) (service.Parts, error) {
			h := &handler{outbox: d.Outbox, defaultStock: cfg.DefaultStock, shipDelay: cfg.ShipDelay, log: d.Log,
				tracer: timer.Tracer(d.Tracing)}
			api := &api{pool: d.Pool, defaultStock: cfg.DefaultStock, log: d.Log}
			return service.Parts{
				Batch:       h.handle,
				Routes:      api.routes,
				BatchTimers: map[string]timer.BatchFireFunc{timerShip: h.ship},
			}, nil
		},
	}, log)
}
