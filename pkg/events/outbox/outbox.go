// Package outbox is the transactional outbox every service uses with its own
// database: Write inserts events inside the caller's transaction, and Run
// relays committed rows to Kafka.
//
// How rows are relayed: each row records its transaction's id (xid8). The
// relay keeps one cursor (txid, id) in outbox_cursor and reads the next rows
// in (txid, id) order, taking only rows whose txid is below
// outbox_horizon(): the oldest transaction still running in this database
// (or one whose database it cannot tell because it just ended), else the
// snapshot's xmax. A transaction open in another database on the same
// server cannot write here and does not count, unlike in the server-wide
// pg_snapshot_xmin. That set cannot grow behind the
// cursor any more, so a transaction that commits late is waited for, never
// skipped. After the broker acked a batch the cursor moves past it in one
// small update.
//
// Guarantees:
//   - An event is published if and only if the transaction that wrote it
//     committed; none is skipped.
//   - Events are published in (txid, id) order through one idempotent
//     producer, which keeps per-partition order across retries. A
//     PostgreSQL transaction draws its txid at its first write, so events of
//     one orderId come out in commit order when the transactions writing
//     them serialize on that order before their first write: take the row
//     lock (SELECT ... FOR UPDATE) or call LockKey first. A transaction that
//     writes something else first and only then waits for the order can
//     publish before one that committed earlier.
//   - One relay publishes at a time: instances compete for a session
//     advisory lock on a dedicated connection (with short server-side TCP
//     keepalives, so a vanished host frees it within seconds). Each
//     leadership term has its own producer, dropped when the lease is lost;
//     the cursor moves by compare-and-set from the position a batch was read
//     after, so a deposed leader can never move it past unpublished rows.
//   - A crash between the broker's ack and the cursor update only
//     re-publishes the same eventIds; consumers deduplicate by eventId.
//
// Not guaranteed: exactly-once delivery. And a write transaction left open
// in a service's database holds that service's relay back until it ends;
// orderflow_outbox_oldest_age_seconds shows it.
package outbox

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/outbox/internal/outboxdb"
	"github.com/orderflow/orderflow/pkg/events/retry"
	"github.com/orderflow/orderflow/pkg/postgres"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or updates the outbox table in the pool's database. Its
// version history is kept apart from the service's own migrations.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return postgres.Migrate(ctx, pool, mustSub(migrations, "migrations"), "goose_outbox")
}

// Config configures one service's outbox.
type Config struct {
	Service string   // e.g. "orders"; records carry ce_source "orderflow/<service>"
	Brokers []string // Kafka seed brokers

	// Publisher, when set, relays the rows instead of Kafka (Brokers is
	// then unused): e.g. the email service's tasks to RabbitMQ.
	Publisher Publisher

	BatchSize  int           // rows per relay batch; default 5000
	Retention  time.Duration // published rows are kept this long; default 7 days
	LeaseRetry time.Duration // how often a follower tries to become leader; default 1s
	MinPoll    time.Duration // first fallback poll after activity; default 10ms
	MaxPoll    time.Duration // longest idle wait between polls when no wake-up comes; default 1s
	// Drain is how long a stopping relay lets its batch in flight finish
	// (see term); default 5 s, within service.DefaultShutdownTimeout.
	Drain time.Duration

	// Registerer receives the outbox metrics and the relay's Kafka client's
	// (kafka.Instrument); nil registers none.
	Registerer prometheus.Registerer

	// Kafka is how the relay authenticates to the brokers (SASL, TLS).
	Kafka kafka.Security

	// LogSteps logs one info line per event published to Kafka, the step
	// of its order (steps.go).
	LogSteps bool

	// Tracing, when set, gives each published record a "<topic> publish"
	// span, child of the span that wrote its row (the row's traceparent);
	// nil: off, and the row's traceparent is passed on as written.
	Tracing trace.TracerProvider
}

func (c *Config) setDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 5000
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.LeaseRetry <= 0 {
		c.LeaseRetry = time.Second
	}
	if c.MaxPoll <= 0 {
		c.MaxPoll = time.Second
	}
	if c.MinPoll <= 0 {
		c.MinPoll = min(10*time.Millisecond, c.MaxPoll)
	}
	if c.Drain <= 0 {
		c.Drain = defaultDrain
	}
}

// Outbox is one service's outbox: its writer and its relay.
type Outbox struct {
	pool      *pgxpool.Pool // the service's: Write runs in its transactions
	relayPool *pgxpool.Pool // the relay's own, set by Run before its goroutines start
	cfg       Config
	log       *slog.Logger
	source    string // ce_source
	metrics   *metrics
	kafka     []kgo.Opt // the relay producer's instrumentation

	committed chan struct{}              // Committed → relay, capacity 1
	leader    atomic.Bool                // this process's relay holds the lease
	pinger    atomic.Pointer[kgo.Client] // for Ready, while Run runs
	polls     atomic.Int64               // batches read, for tests
	outage    *retry.Outage              // infrastructure failures being waited out
	guard     atomic.Pointer[error]      // the cursor guard's error while it blocks publishing

	guardLogged time.Time // when the guard's error was last logged (the relay's goroutine only)

	// crashAfterAck is a test hook: when it returns true, a batch the
	// broker acked is left behind the cursor, as if the process died
	// between the ack and the cursor update.
	crashAfterAck func() bool
}

// New returns the outbox of the service whose database pool is given. The
// table must exist: call Migrate at start.
func New(pool *pgxpool.Pool, cfg Config, log *slog.Logger) *Outbox {
	cfg.setDefaults()
	o := &Outbox{
		pool:      pool,
		cfg:       cfg,
		log:       log.With("component", "outbox"),
		source:    "orderflow/" + cfg.Service,
		committed: make(chan struct{}, 1),
	}
	o.metrics = newMetrics(o, cfg.Registerer)
	o.outage = retry.NewOutage("relay", cfg.Registerer)
	o.kafka, _ = kafka.Instrument(kafka.Instrumentation{
		ClientID: "orderflow-" + cfg.Service + "-relay", Registerer: cfg.Registerer, Tracing: cfg.Tracing,
		Security: cfg.Kafka,
	})
	return o
}

// Write validates each event against its schema, fills in eventId (UUIDv7),
// version and occurredAt when empty, and inserts it in tx with the
// correlation id and traceparent carried by ctx. Nothing is written when any
// event is invalid: the caller's transaction should then roll back.
func (o *Outbox) Write(ctx context.Context, tx pgx.Tx, events ...contract.Event) error {
	var b Batch
	if err := b.Add(ctx, events...); err != nil {
		return err
	}
	return o.WriteBatch(ctx, tx, &b)
}

// Batch collects the events of many messages (each with the correlation id
// and traceparent of its own context) for WriteBatch, which inserts them
// all in one statement: a batch handler applying a hundred records writes
// their events in one round trip, not a hundred. The zero Batch is empty
// and ready.
type Batch struct {
	p   outboxdb.InsertEventsParams
	now time.Time
}

// Add completes, marshals and validates events as Write does, taking the
// correlation id and traceparent from ctx, and appends them. Nothing is
// appended when one is invalid.
func (b *Batch) Add(ctx context.Context, events ...contract.Event) error {
	if b.now.IsZero() {
		b.now = time.Now().UTC()
	}
	rows := make([]outboxdb.InsertEventParams, 0, len(events))
	for _, e := range events {
		p, err := prepare(e, b.now)
		if err != nil {
			return err
		}
		p.CorrelationID = correlation.ID(ctx)
		p.Traceparent = correlation.Traceparent(ctx)
		rows = append(rows, p)
	}
	for _, p := range rows {
		b.add(p)
	}
	return nil
}

func (b *Batch) add(p outboxdb.InsertEventParams) {
	b.p.EventIds = append(b.p.EventIds, p.EventID)
	b.p.Topics = append(b.p.Topics, p.Topic)
	b.p.Keys = append(b.p.Keys, p.Key)
	b.p.EventTypes = append(b.p.EventTypes, p.EventType)
	b.p.Payloads = append(b.p.Payloads, string(p.Payload))
	b.p.CorrelationIds = append(b.p.CorrelationIds, p.CorrelationID)
	b.p.Traceparents = append(b.p.Traceparents, p.Traceparent)
	b.p.OccurredAts = append(b.p.OccurredAts, p.OccurredAt)
}

// Append adds o's events after b's, as they are: several writers' batches
// go into one statement.
func (b *Batch) Append(o *Batch) {
	for i := range o.p.EventIds {
		b.p.EventIds = append(b.p.EventIds, o.p.EventIds[i])
		b.p.Topics = append(b.p.Topics, o.p.Topics[i])
		b.p.Keys = append(b.p.Keys, o.p.Keys[i])
		b.p.EventTypes = append(b.p.EventTypes, o.p.EventTypes[i])
		b.p.Payloads = append(b.p.Payloads, o.p.Payloads[i])
		b.p.CorrelationIds = append(b.p.CorrelationIds, o.p.CorrelationIds[i])
		b.p.Traceparents = append(b.p.Traceparents, o.p.Traceparents[i])
		b.p.OccurredAts = append(b.p.OccurredAts, o.p.OccurredAts[i])
	}
}

// Len is how many events b holds.
func (b *Batch) Len() int { return len(b.p.EventIds) }

// WriteBatch inserts b's events in tx, in the order they were added, in one
// statement; an empty batch writes nothing.
func (o *Outbox) WriteBatch(ctx context.Context, tx pgx.Tx, b *Batch) error {
	switch b.Len() {
	case 0:
		return nil
	case 1: // the single-row statement is prepared once and cheaper to plan
		p := b.single()
		if err := outboxdb.New(tx).InsertEvent(ctx, p); err != nil {
			return fmt.Errorf("outbox: insert %s: %w", p.EventType, err)
		}
		return nil
	}
	if err := outboxdb.New(tx).InsertEvents(ctx, b.p); err != nil {
		return fmt.Errorf("outbox: insert %d events: %w", b.Len(), err)
	}
	return nil
}

// Queue adds the statement that writes b's events to pb, for a caller that
// sends a whole transaction as one pgx.Batch: sent outside an explicit
// transaction, PostgreSQL runs the batch (one Sync) as one implicit
// transaction, so the events commit with the batch's other statements or
// not at all, and the lot costs one round trip. Closing the batch's results
// reports a failed insert; call Committed after it succeeded.
func (o *Outbox) Queue(pb *pgx.Batch, b *Batch) {
	var q *pgx.QueuedQuery
	switch b.Len() {
	case 0:
		return
	case 1:
		p := b.single()
		q = pb.Queue(outboxdb.InsertEvent, p.EventID, p.Topic, p.Key, p.EventType, p.Payload,
			p.CorrelationID, p.Traceparent, p.OccurredAt)
	default:
		p := b.p
		q = pb.Queue(outboxdb.InsertEvents, p.EventIds, p.Topics, p.Keys, p.EventTypes, p.Payloads,
			p.CorrelationIds, p.Traceparents, p.OccurredAts)
	}
	n := b.Len()
	q.Fn = func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("outbox: insert %d events: %w", n, err)
		}
		return nil
	}
}

// single is the row of a Batch of one.
func (b *Batch) single() outboxdb.InsertEventParams {
	return outboxdb.InsertEventParams{
		EventID: b.p.EventIds[0], Topic: b.p.Topics[0], Key: b.p.Keys[0], EventType: b.p.EventTypes[0],
		Payload: []byte(b.p.Payloads[0]), CorrelationID: b.p.CorrelationIds[0],
		Traceparent: b.p.Traceparents[0], OccurredAt: b.p.OccurredAts[0],
	}
}

// Message is an outbox row as a Publisher sends it, and as WriteMessage
// writes one that is not a Kafka event of the contract.
type Message struct {
	EventID       uuid.UUID // the message's id, unique in the outbox
	Topic         string    // where it goes: a Kafka topic, an exchange
	Key           string    // the orderId
	Type          string    // e.g. "SendEmail"
	Payload       []byte    // published byte for byte
	CorrelationID string    // WriteMessage: from ctx when empty
	Traceparent   string    // WriteMessage: from ctx when empty
	OccurredAt    time.Time // WriteMessage: now when zero
}

// Publisher sends outbox rows to a broker (Config.Publisher).
type Publisher interface {
	// Publish sends msgs in order and returns how many, from the first,
	// the broker confirmed; the relay moves its cursor past those only and
	// sends the rest again.
	Publish(ctx context.Context, msgs []Message) (confirmed int, err error)
	// Ready reports whether the broker answers.
	Ready(ctx context.Context) error
}

// WriteMessage inserts messages that are not events of the contract (so
// not schema-checked here: the caller validates them) in tx, to be relayed
// like events, all of them in one statement. Use it with a
// Config.Publisher.
func (o *Outbox) WriteMessage(ctx context.Context, tx pgx.Tx, msgs ...Message) error {
	var b Batch
	now := time.Now().UTC()
	for _, m := range msgs {
		if m.EventID == uuid.Nil || m.Topic == "" || m.Type == "" {
			return fmt.Errorf("outbox: message %q to %q of type %q: id, topic and type are required", m.EventID, m.Topic, m.Type)
		}
		p := outboxdb.InsertEventParams{
			EventID: m.EventID, Topic: m.Topic, Key: m.Key, EventType: m.Type, Payload: m.Payload,
			CorrelationID: cmp.Or(m.CorrelationID, correlation.ID(ctx)),
			Traceparent:   cmp.Or(m.Traceparent, correlation.Traceparent(ctx)),
			OccurredAt:    m.OccurredAt,
		}
		if p.OccurredAt.IsZero() {
			p.OccurredAt = now
		}
		b.add(p)
	}
	return o.WriteBatch(ctx, tx, &b)
}

// prepare completes e's envelope, marshals and validates it.
func prepare(e contract.Event, now time.Time) (outboxdb.InsertEventParams, error) {
	name := e.Name()
	m := e.Meta()
	topic, ok := contract.TopicOf(name)
	if !ok {
		return outboxdb.InsertEventParams{}, fmt.Errorf("outbox: event %s has no topic", name)
	}
	m.Event = name
	if m.Version == 0 {
		m.Version = 1
	}
	if m.EventID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return outboxdb.InsertEventParams{}, fmt.Errorf("outbox: event id: %w", err)
		}
		m.EventID = id.String()
	}
	if m.OccurredAt.IsZero() {
		m.OccurredAt = now
	}
	eventID, err := uuid.Parse(m.EventID)
	if err != nil {
		return outboxdb.InsertEventParams{}, fmt.Errorf("outbox: %s eventId %q: %w", name, m.EventID, err)
	}
	payload, err := json.Marshal(e)
	if err != nil {
		return outboxdb.InsertEventParams{}, fmt.Errorf("outbox: marshal %s: %w", name, err)
	}
	if err := contract.Validate(name, m.Version, payload); err != nil {
		return outboxdb.InsertEventParams{}, fmt.Errorf("outbox: %s: %w", name, err)
	}
	return outboxdb.InsertEventParams{
		EventID:    eventID,
		Topic:      topic,
		Key:        m.OrderID,
		EventType:  name,
		Payload:    payload,
		OccurredAt: m.OccurredAt,
	}, nil
}

// LockKey serializes the transactions that write events for key (an
// orderId) without assigning a transaction id: call it before the
// transaction's first write when the transaction has no row of its own to
// lock, so the events of one key are published in commit order (see the
// package doc). The lock is released at commit or rollback.
func LockKey(ctx context.Context, tx pgx.Tx, key string) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key); err != nil {
		return fmt.Errorf("outbox: lock key %s: %w", key, err)
	}
	return nil
}

// LockKeys is LockKey for many keys in one round trip: it takes their
// locks one after the other in byte order (sorting and deduplicating keys in
// place), the order every multi-key caller keeps, so two such transactions
// never deadlock on each other.
func LockKeys(ctx context.Context, tx pgx.Tx, keys []string) error {
	slices.Sort(keys)
	keys = slices.Compact(keys)
	// unnest yields the array in order and the aggregate consumes the rows
	// as they come, so the locks are taken in the array's order.
	if _, err := tx.Exec(ctx, "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM unnest($1::text[]) AS k", keys); err != nil {
		return fmt.Errorf("outbox: lock %d keys: %w", len(keys), err)
	}
	return nil
}

// TryLockKeys is TryLockKey for many keys in one round trip: it tries
// their locks in the order given and returns the keys whose lock the
// transaction now holds. Trying never waits, so the order cannot deadlock.
func TryLockKeys(ctx context.Context, tx pgx.Tx, keys []string) ([]string, error) {
	rows, err := tx.Query(ctx, "SELECT k FROM unnest($1::text[]) AS k WHERE pg_try_advisory_xact_lock(hashtextextended(k, 0))", keys)
	if err != nil {
		return nil, fmt.Errorf("outbox: try lock %d keys: %w", len(keys), err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("outbox: try lock %d keys: %w", len(keys), err)
	}
	return got, nil
}

// TryLockKey is LockKey without the wait: it takes key's lock when no other
// transaction holds it and reports whether it did. The lock is the same
// (same hash), so it serializes with LockKey callers and keeps their commit
// order. It is for transactions that handle many keys at once (package
// timer): they skip a key that is busy and come back to it later, instead
// of waiting behind an order transaction while holding other keys. Like
// LockKey it assigns no transaction id, so call it before the first write.
func TryLockKey(ctx context.Context, tx pgx.Tx, key string) (bool, error) {
	var got bool
	if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))", key).Scan(&got); err != nil {
		return false, fmt.Errorf("outbox: try lock key %s: %w", key, err)
	}
	return got, nil
}

// Committed tells the relay that a transaction which wrote events has
// committed, so it publishes them now rather than at its next poll. It never
// blocks; calls while a wake-up is pending coalesce.
func (o *Outbox) Committed() {
	select {
	case o.committed <- struct{}{}:
	default:
	}
}
