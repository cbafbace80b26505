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
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

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
)

//go:embed migrations/*.sql
var migrations embed.FS

// Config configures the service: the shared settings only. Zero fields
// take the defaults of ConfigFromEnv.
type Config struct {
	service.Config
}

// DefaultHTTPAddr is where the API listens unless ORDERS_HTTP_ADDR says
// otherwise.
const DefaultHTTPAddr = ":8080"

// ConfigFromEnv reads the shared variables (service.FromEnv: POSTGRES_URL,
// KAFKA_BROKERS, OUTBOX_RETENTION, ORDERS_HTTP_ADDR, default ":8080"). The
// error is one line naming each bad variable.
func ConfigFromEnv() (Config, error) {
	e := config.FromEnv()
	cfg := Config{Config: service.FromEnv(e, serviceName, DefaultHTTPAddr)}
	if err := e.Err(); err != nil {
		return Config{}, err
	}
	return cfg, cfg.Validate()
}

// Migrate creates or updates the service's tables, its outbox and its inbox
// in the pool's database.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return service.Migrate(ctx, pool, serviceName, migrationsFS())
}

func migrationsFS() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory is there at build time
	}
	return sub
}

// Run runs the service until ctx is done (see service.Run): it serves the
// orders API and relays its outbox.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.SetDefaults(serviceName, DefaultHTTPAddr)
	return service.Run(ctx, cfg.Config, service.Spec{
		Migrations: migrationsFS(),
		Setup: func(d service.Deps) (service.Parts, error) {
			api := newAPI(d.Pool, d.Outbox, d.Log)
			return service.Parts{Routes: api.routes}, nil
		},
	}, log)
}
