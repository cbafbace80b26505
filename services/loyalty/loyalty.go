// Package loyalty is the loyalty service: it consumes the "payments" and
// "orders" topics, awards a customer points for each paid order
// LOYALTY_AWARD_DELAY after its PaymentCaptured unless the order is
// cancelled (OrderCancelled) or refunded (PaymentRefunded) before then,
// announces each award as PointsAwarded on the topic "loyalty" through its
// outbox, and serves each customer's balance and awards at
// GET /customers/{customerId}/points.
//
// Points: one per whole currency unit, floor(amountCents / 100), so 12,345
// cents earn 123 points. A payment worth no point (under 100 cents)
// schedules nothing and emits nothing.
//
// Guarantees:
//   - At most one award per order, whatever is redelivered: a duplicate
//     record is dropped by the inbox, and a second PaymentCaptured of the
//     same order (a new eventId) finds the order's award decided and does
//     nothing.
//   - Records are applied a batch at a time (see handleBatch), with a
//     handful of statements per batch, and each order ends as if its
//     records had been applied one by one in offset order, also when one
//     batch holds several of them. Timers fire a batch at a time too
//     (fireAwards).
//   - The award is a durable timer (package timer) written in the same
//     transaction as the award row: a restart or crash neither loses it (it
//     fires once any instance runs after its due time) nor doubles it (the
//     award's history row, whose points the balance sums, and its
//     PointsAwarded commit together with the timer's fired mark, once, also
//     with several instances on one database).
//   - A cancellation or refund handled before the timer fired drops the
//     award for good: the timer is cancelled in the same transaction, under
//     the order's lock, so it can no longer fire. One handled before the
//     order's PaymentCaptured is remembered, and that capture then schedules
//     nothing.
//
// Not guaranteed: that the award comes exactly LOYALTY_AWARD_DELAY after
// the capture. The delay counts from when loyalty handled PaymentCaptured
// (not its occurredAt, so a consumer that lagged still leaves a
// cancellation the whole window), and the timer may fire later than due
// (see package timer). A cancellation or refund that arrives after the award
// fired changes nothing: points are never clawed back (it is logged at
// info). A cancellation that loyalty handles only after the award fired,
// because its topic lagged, counts as late, even if the order was cancelled
// earlier.
package loyalty

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
// "orderflow/loyalty"), its consumer group and logs.
const serviceName = "loyalty"

//go:embed migrations/*.sql
var migrations embed.FS

// Config configures the service: the shared settings, and the award delay.
// Zero fields take the defaults of ConfigFromEnv.
type Config struct {
	service.Config
	AwardDelay time.Duration // from PaymentCaptured to the award; default 10m
}

// Defaults.
const (
	DefaultHTTPAddr   = ":8083"
	DefaultAwardDelay = 10 * time.Minute
)

func (c *Config) setDefaults() {
	c.SetDefaults(serviceName, DefaultHTTPAddr)
	if c.AwardDelay == 0 {
		c.AwardDelay = DefaultAwardDelay
	}
}

// ConfigFromEnv reads the shared variables (service.FromEnv: POSTGRES_URL,
// KAFKA_BROKERS, OUTBOX_RETENTION, LOYALTY_HTTP_ADDR, default ":8083") and
// LOYALTY_AWARD_DELAY (a Go duration, or days as "1d"; default 10m; must be
// positive). The error is one line naming each bad variable.
func ConfigFromEnv() (Config, error) {
	e := config.FromEnv()
	cfg := Config{Config: service.FromEnv(e, serviceName, DefaultHTTPAddr)}
	cfg.AwardDelay = e.Duration("LOYALTY_AWARD_DELAY", DefaultAwardDelay)
	if cfg.AwardDelay == 0 {
		e.Reject("LOYALTY_AWARD_DELAY", "must be positive (e.g. 10m, 30s)")
	}
	if err := e.Err(); err != nil {
		return Config{}, err
	}
	cfg.setDefaults()
	return cfg, cfg.Validate()
}

// Validate reports the first bad field, named as its environment variable.
func (c Config) Validate() error {
	if c.AwardDelay <= 0 {
		return errors.New("LOYALTY_AWARD_DELAY: must be positive")
	}
	return c.Config.Validate()
}

// Migrate creates or updates the service's tables, its outbox, its inbox
// and its timers in the pool's database.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return service.Migrate(ctx, pool, serviceName, service.Sub(migrations, "migrations"))
}

// Run runs the service until ctx is done (see service.Run): it consumes
// the payments and orders topics, fires the award timers, relays its outbox
// and serves GET /customers/{customerId}/points.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log.Info("loyalty settings", "award_delay", cfg.AwardDelay)
	return service.Run(ctx, cfg.Config, service.Spec{
		Migrations: service.Sub(migrations, "migrations"),
		Topics:     registry.Get(serviceName).Consumes,
		Emits:      registry.Get(serviceName).Emits,
		Events:     decoder.Events(),
		Setup: func(d service.Deps) (service.Parts, error) {
			h := &handler{outbox: d.Outbox, awardDelay: cfg.AwardDelay, log: d.Log, tracer: timer.Tracer(d.Tracing)}
			api := &api{pool: d.Pool, log: d.Log}
			return service.Parts{
				Batch:       h.handleBatch,
				Routes:      api.routes,
				BatchTimers: map[string]timer.BatchFireFunc{timerAward: h.fireAwards},
			}, nil
		},
	}, log)
}
