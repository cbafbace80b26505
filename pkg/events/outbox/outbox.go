// Package outbox is the transactional outbox every service uses with its own
// database: Write inserts events inside the caller's transaction, and Run
// relays committed rows to Kafka.
//
// Guarantees: an event is published if and only if the transaction that
// wrote it committed; events of one orderId are published in commit order,
// even with several relay instances on one outbox (one leader at a time,
// holding a PostgreSQL advisory lock); a crash between the broker's ack and
// the bulk mark only re-publishes the same eventId. Not guaranteed: exactly
// once delivery. Consumers deduplicate by eventId.
package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/events/contract"
)

// Config configures one service's outbox.
type Config struct {
	Service   string        // e.g. "orders"; ce_source is "orderflow/<service>"
	Brokers   []string      // Kafka seed brokers
	BatchSize int           // rows per relay batch; default 5000
	Retention time.Duration // published rows kept this long; default 7 days
}

// Outbox is one service's outbox: its writer and its relay.
type Outbox struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger
}

// New returns the outbox of the service whose database pool is given. The
// table must exist: call Migrate at start.
func New(pool *pgxpool.Pool, cfg Config, log *slog.Logger) *Outbox {
	return &Outbox{pool: pool, cfg: cfg, log: log}
}

// Write validates each event against its schema, fills in eventId and
// occurredAt when empty, and inserts it in tx, with the correlation id
// carried by ctx. Nothing is written when any event is invalid.
func (o *Outbox) Write(ctx context.Context, tx pgx.Tx, events ...contract.Event) error {
	panic("todo")
}

// Committed tells the relay that a transaction which wrote events has
// committed, so it publishes them now rather than at its next poll. It never
// blocks.
func (o *Outbox) Committed() {}

// Run relays the outbox to Kafka until ctx is done.
func (o *Outbox) Run(ctx context.Context) error { panic("todo") }

// Ready reports whether the relay can reach its database and broker.
func (o *Outbox) Ready(ctx context.Context) error { panic("todo") }
