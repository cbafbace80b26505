// Package orders is the orders service: it accepts orders over HTTP and
// announces each with an OrderPlaced event, written to its outbox in the
// same transaction as the order, and relayed to the Kafka topic "orders".
// It cancels orders on request (POST /orders/{id}/cancel) or when the
// warehouse has no stock, announcing OrderCancelled the same way, and it
// consumes the payments, warehouse and loyalty topics to keep each order's
// status, points and timeline (consume.go says how).
//
// Guarantees: an order is stored if and only if its OrderPlaced event is;
// invalid requests write nothing; one Idempotency-Key places at most one
// order, however many times and however concurrently it is sent; an
// order's status only moves forward, and it is cancelled, with one
// OrderCancelled event, at most once and never after it shipped.
package orders

import (
	"context"
	"embed"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/service"
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
	// ErrShipped: the order has shipped, too late to cancel it.
	ErrShipped = errors.New("order already shipped")
	// ErrPaymentFailed: the order's payment failed, so it ended there and
	// there is nothing to cancel.
	ErrPaymentFailed = errors.New("order payment failed")
)

// Order statuses (docs/design.md "Business rules"). An order starts placed; shipped,
// payment_failed and cancelled are final.
const (
	statusPlaced        = "placed"
	statusPaid          = "paid"
	statusShipped       = "shipped"
	statusPaymentFailed = "payment_failed"
	statusCancelled     = "cancelled"
)

// Cancel reasons orders sets itself; a customer may give any other.
const (
	reasonCustomerRequest = "customer_request" // POST /orders/{id}/cancel without a reason
	reasonOutOfStock      = "out_of_stock"     // after StockUnavailable
)

//go:embed migrations/*.sql
var migrations embed.FS

// Config configures the service: the shared settings only. Zero fields
// take the defaults of ConfigFromEnv.
type Config struct {
	service.Config
	// IdempotencyRetention is how long an Idempotency-Key is remembered;
	// default DefaultIdempotencyRetention.
	IdempotencyRetention time.Duration
}

// DefaultHTTPAddr is where the API listens unless ORDERS_HTTP_ADDR says
// otherwise.
const DefaultHTTPAddr = ":8080"

// ConfigFromEnv reads the shared variables (service.FromEnv: POSTGRES_URL,
// KAFKA_BROKERS, OUTBOX_RETENTION, ORDERS_HTTP_ADDR, default ":8080") and
// IDEMPOTENCY_KEY_RETENTION (a Go duration or days, default 24h, positive).
// The error is one line naming each bad variable.
func ConfigFromEnv() (Config, error) {
	e := config.FromEnv()
	cfg := Config{Config: service.FromEnv(e, serviceName, DefaultHTTPAddr)}
	cfg.IdempotencyRetention = e.Duration("IDEMPOTENCY_KEY_RETENTION", DefaultIdempotencyRetention)
	if cfg.IdempotencyRetention <= 0 {
		e.Reject("IDEMPOTENCY_KEY_RETENTION", "must be positive (e.g. 24h, 7d)")
	}
	if err := e.Err(); err != nil {
		return Config{}, err
	}
	return cfg, cfg.Validate()
}

// Migrate creates or updates the service's tables, its outbox and its inbox
// in the pool's database.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return service.Migrate(ctx, pool, serviceName, service.Sub(migrations, "migrations"))
}

// Run runs the service until ctx is done (see service.Run): it serves the
// orders API, consumes the payments, warehouse and loyalty topics and
// relays its outbox.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.SetDefaults(serviceName, DefaultHTTPAddr)
	if cfg.IdempotencyRetention <= 0 {
		cfg.IdempotencyRetention = DefaultIdempotencyRetention
	}
	return service.Run(ctx, cfg.Config, service.Spec{
		Migrations: service.Sub(migrations, "migrations"),
		Topics:     registry.Get(serviceName).Consumes,
		Emits:      registry.Get(serviceName).Emits,
		Setup: func(d service.Deps) (service.Parts, error) {
			api := newAPI(d.Pool, d.Outbox, d.Log)
			h := &handler{outbox: d.Outbox, log: d.Log}
			prune := func(ctx context.Context) error {
				return pruneIdempotencyKeys(ctx, d.Pool, cfg.IdempotencyRetention, d.Log)
			}
			return service.Parts{Batch: h.handle, Routes: api.routes, Workers: []func(context.Context) error{prune}}, nil
		},
	}, log)
}
