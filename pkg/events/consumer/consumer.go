// Package consumer is the Kafka consumer runner every service uses: one
// consumer group per service ("orderflow-<service>"), each assigned
// partition handled by its own goroutine strictly in offset order, the
// partitions concurrently, and each event applied inside a database
// transaction together with its inbox row (package inbox).
//
// Per record:
//   - Not JSON, an envelope without event, version (>= 1), eventId (a UUID)
//     or orderId, or a known event that fails its JSON Schema: sent to
//     "dlq.<service>" at once, without retries.
//   - A valid envelope of an event the service does not handle
//     (Config.Events), at any version: passed over without a transaction,
//     an inbox row or a schema check, counted as result="ignored". Its
//     schema is the business of the services that handle it, which
//     dead-letter it.
//   - A valid envelope naming an event this build has no schema for at
//     all: skipped and counted as result="skipped", not dead-lettered. It
//     comes from a newer producer (a new event type), which a consumer that
//     does not know it has no business handling.
//   - An event the service handles, at a version this build has no schema
//     for (a producer upgraded before its consumers): sent to the DLQ at
//     once, saying which versions this build knows. Skipping it would lose
//     its effect without a trace; once the consumer is upgraded,
//     orderflowctl dlq replay delivers it. Consumers must learn a version
//     before producers emit it.
//   - Otherwise a transaction is begun, the order's lock taken
//     (outbox.LockKey on the envelope's orderId, so one order's
//     transactions in this database serialize before their first write and
//     the outbox keeps their events in commit order), and the eventId
//     claimed in the inbox; a duplicate rolls back and is counted
//     (result="duplicate"), a fresh one runs the Handler in the same
//     transaction and commits (result="ok").
//     When the attempt fails because of the infrastructure (the database
//     or a broker away, a connection reset, a deadlock: package retry),
//     the transaction rolls back and the record is tried again with capped
//     backoff for as long as that lasts; no attempt is spent, nothing is
//     dead-lettered, the partition waits (its order holds), and Ready
//     reports the wait. When the Handler's own error fails it, the
//     record is retried after an exponential backoff with full jitter, at
//     most MaxAttempts times and while MaxRetryTime (not counting
//     infrastructure waits) has not passed since the first attempt
//     (result="retry" per failed attempt); then, or at once when the
//     error wraps ErrPermanent, it is sent to the DLQ (result="dead"). Dead letters are the record unchanged (key, value,
//     headers, timestamp) plus x-dlq-topic, x-dlq-partition, x-dlq-offset,
//     x-dlq-error and x-dlq-attempts; the partition moves on only after the
//     DLQ write was acknowledged.
//
// Guarantees:
//   - An offset is committed only after its record's transaction committed,
//     or its dead letter was acknowledged, or it was skipped. A crash in
//     between redelivers the record and the inbox turns it into a
//     duplicate: effects happen once per database, delivery is at least
//     once.
//   - Records of one partition are handled one at a time in offset order,
//     also across retries; other partitions keep flowing meanwhile (backoff
//     sleeps happen in the partition's goroutine).
//   - On revocation (cooperative-sticky rebalancing, so only moving
//     partitions stop) and on shutdown, each partition's goroutine finishes
//     the record it is handling, abandons a pending retry (it is redelivered
//     to the next owner), and the offsets of what is done are committed
//     before the partition is released or the group left. Lost partitions
//     (session expired) cancel the handler's context and commit nothing.
//   - Run returns only after every goroutine it started has ended.
//
// How: the poll loop (with kgo.BlockRebalanceOnPoll, so assignments change
// only between polls) appends each partition's records to that partition's
// queue without ever blocking; a partition whose queue holds maxQueued
// records has its fetching paused until its goroutine catches up, so a
// partition stuck in retries neither stalls the others nor piles up memory.
// Batching: when records of a partition queue up (the handlers are behind),
// up to MaxBatch consecutive well-formed ones are handled in one
// transaction: every order key of the batch locked first, in sorted order
// and in one statement (so two batches never deadlock on them, and no
// write precedes a lock), then every eventId claimed in the inbox in one
// statement, then the BatchHandler once with the
// fresh records in order (Config.Batch; a per-record Handler is called for
// each in turn through PerRecord). A service whose BatchHandler applies the
// batch set-based (a statement per table, its events in one outbox.Batch)
// pays a handful of round trips per batch instead of several per record.
// Records of events the service ignores ride along without any of it. One commit then pays for
// many records, which is what lets a service keep up with more than a few
// hundred events a second on a disk that takes a millisecond per commit.
// When the handler fails on a record (a RecordError names it), the transaction rolls back, the
// records before it are handled again in a new one, and the failing record
// goes on alone, that failure counting as its first attempt, with its own
// retries and dead-lettering. A Handler error wrapping ErrBatchConflict is
// not a failure: the records before it commit and the next batch starts
// with it. Any other failure (the connection, the
// commit) rolls the batch back and its records are handled one by one.
// The batches several partitions have ready at the same moment run in one
// transaction (group commit across partitions, at most Transactions at
// once; see joint.go): under a steady load a partition has a record or two
// at a time, and joined they still share one commit. Nothing waits for a
// batch to fill: a record alone is a batch of one.
//
// Auto-commit is disabled; each partition's goroutine hands the offset
// after the last record it finished to the session's committer after every
// batch it takes from its queue and when it stops, and the committer
// commits every partition's in one request (commit.go), so a crash
// redelivers only what was handled since the last commit, a round trip's
// worth.
//
// Metrics: orderflow_consumer_handled_total{topic,result},
// orderflow_consumer_handle_seconds{topic} and orderflow_consumer_lag{group,
// topic,partition}, the last read from the brokers at scrape time (kadm's
// Lag: the group's committed offsets against each partition's high
// watermark), each replica reporting the partitions assigned to it; and
// franz-go's client metrics (orderflow_kafka_*, see kafka.Instrument).
//
// Tracing (Config.Tracing): see tracing in trace.go.
//
// Not guaranteed: exactly-once delivery to the Handler (it may see an event
// again after a failed attempt or a crash, each time in a new transaction);
// ordering across partitions or topics. The Handler's context is cancelled
// only when its partition is lost, not on revocation or shutdown (the record
// in hand is finished), so a slow Handler holds up a rebalance or shutdown
// for as long as it runs. Topics, including "dlq.<service>", must exist.
package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/inbox"
	"github.com/orderflow/orderflow/pkg/events/internal/clock"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/retry"
)

// Handler applies one event's effect in tx, the transaction that also
// records the event in the inbox. It must not commit or roll back tx. A
// returned error rolls the transaction back; the record is retried unless
// the error wraps ErrPermanent.
type Handler func(ctx context.Context, tx pgx.Tx, msg Message) error

// BatchHandler applies the fresh events of one batch, msgs in offset
// order, in tx, the transaction that also records them in the inbox; the
// order keys of msgs are locked already. It is the set-based way: one
// statement per table for the whole batch, events written with one
// outbox.Batch. It must not commit or roll back tx, and must take the
// correlation id of each message from msg.Context, not from ctx.
//
// It returns nil, or a *RecordError naming the message that failed: the
// transaction rolls back, the records before it are applied again and
// committed without it, and it goes on alone as a record whose first
// attempt failed (a RecordError wrapping ErrBatchConflict spends no
// attempt: the next batch starts with it). Any other error rolls the batch
// back and its records are handled one at a time, each a batch of one,
// where every error is the record's. A handler that cannot tell which
// message failed may return a plain error and pay that.
type BatchHandler func(ctx context.Context, tx pgx.Tx, msgs []Message) error

// RecordError is a BatchHandler's failure of msgs[Index].
type RecordError struct {
	Index int
	Err   error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("record %d of the batch: %v", e.Index, e.Err)
}
func (e *RecordError) Unwrap() error { return e.Err }

// PerRecord is the BatchHandler that calls h for each message in turn, each
// with its message's context: the simple way for a service whose events
// need a statement or two each.
func PerRecord(h Handler) BatchHandler {
	return func(ctx context.Context, tx pgx.Tx, msgs []Message) error {
		for i, msg := range msgs {
			if err := h(msg.Context(ctx), tx, msg); err != nil {
				return &RecordError{Index: i, Err: err}
			}
		}
		return nil
	}
}

// ErrPermanent marks a Handler error that retrying cannot fix: wrap it
// (fmt.Errorf("...: %w", consumer.ErrPermanent)) to send the record to the
// DLQ without further attempts.
var ErrPermanent = errors.New("permanent failure")

// ErrBatchConflict marks a Handler error that only says the record cannot
// be handled safely in the batch it is in, e.g. because it would wait for a
// row lock out of the order the Handler keeps to avoid deadlocks, and a
// row locked by an earlier record of the batch is in the way. The records
// before it are committed and the next batch starts with it; it is not
// counted as a failed attempt. Alone, a record must never fail this way.
var ErrBatchConflict = errors.New("record conflicts with its batch")

// Message is one consumed record with its decoded envelope.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       string            // the orderId
	Headers   map[string]string // the last value of each header key
	Value     []byte            // the event's JSON, as produced
	Envelope  contract.Envelope // decoded from Value; the Handler decodes the rest
	// CorrelationID is the x-correlation-id header; the Handler's context
	// carries it too (correlation.ID).
	CorrelationID string

	span trace.Span // the record's process span; nil when tracing is off
}

// Context is ctx carrying msg's correlation id and trace context, for what
// the handler does on the message's behalf (outbox writes, logs, timers):
// with tracing on, the record's process span, so the events it causes are
// its children; off, the record's own traceparent, passed on unchanged.
func (m Message) Context(ctx context.Context) context.Context {
	if m.CorrelationID != "" {
		ctx = correlation.WithID(ctx, m.CorrelationID)
	}
	if m.span != nil {
		return trace.ContextWithSpan(ctx, m.span)
	}
	if tp := m.Headers[correlation.TraceparentHeader]; correlation.ValidTraceparent(tp) {
		ctx = correlation.WithTraceparent(ctx, tp)
	}
	return ctx
}

// Config configures one service's consumer group.
type Config struct {
	Service string        // group "orderflow-<service>", dead letters to "dlq.<service>"
	Brokers []string      // Kafka seed brokers
	Topics  []string      // topics consumed
	Handler Handler       // per record; or set Batch
	Batch   BatchHandler  // the whole batch at once; takes precedence over Handler
	Pool    *pgxpool.Pool // the service's database, with the inbox migrated

	// Events, when not nil, names the events Handler handles. A record of
	// any other event (with a valid envelope) is passed over without a
	// transaction, an inbox row or a schema check, and counted as
	// result="ignored": a service reads whole topics but needs a few of
	// their events, and the rest would otherwise cost a transaction each.
	Events []string

	// MaxBatch is how many queued records of one partition may be handled
	// in one transaction (see the package doc); default 100, 1 turns
	// batching off.
	MaxBatch int

	// Transactions is how many batch transactions may run at once, each
	// joining the batches the partitions have ready (see "Batching" in the
	// package doc), and the size of the consumer's own pool, copied from
	// Pool's configuration: however many partitions it owns, the consumer
	// holds that many connections (a record retried after a failure waits
	// for one of them). Default DefaultTransactions.
	Transactions int

	MaxAttempts  int           // handler attempts per record; default 5
	MaxRetryTime time.Duration // no retry starts later than this after the first attempt; default 30s
	BaseBackoff  time.Duration // first backoff ceiling, doubling per attempt; default 100ms

	// InboxRetention is how long handled eventIds are kept; default
	// inbox.DefaultRetention (see package inbox for why). Run prunes older
	// rows every InboxRetention/10, at most an hour apart.
	InboxRetention time.Duration

	// AfterCommit, when set, is called after each handler transaction that
	// committed; services pass their outbox's Committed, so the events the
	// handler wrote are published now rather than at the relay's next poll.
	AfterCommit func()

	// Registerer receives the consumer metrics and the Kafka client's
	// (kafka.Instrument); nil registers none.
	Registerer prometheus.Registerer

	// Tracing, when set, traces each record (see tracing); nil: off.
	Tracing trace.TracerProvider

	// Kafka is how the client authenticates to the brokers (SASL, TLS).
	Kafka kafka.Security
}

func (c *Config) setDefaults() {
	if c.Batch == nil {
		c.Batch = PerRecord(c.Handler)
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 100
	}
	if c.Transactions <= 0 {
		c.Transactions = DefaultTransactions
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.MaxRetryTime <= 0 {
		c.MaxRetryTime = 30 * time.Second
	}
	if c.BaseBackoff <= 0 {
		c.BaseBackoff = 100 * time.Millisecond
	}
	if c.InboxRetention <= 0 {
		c.InboxRetention = inbox.DefaultRetention
	}
}

// Validate reports the first missing required field.
func (c *Config) Validate() error {
	switch {
	case c.Service == "":
		return errors.New("consumer: Service is required")
	case len(c.Brokers) == 0:
		return errors.New("consumer: Brokers is required")
	case len(c.Topics) == 0:
		return errors.New("consumer: Topics is required")
	case c.Handler == nil && c.Batch == nil:
		return errors.New("consumer: Handler or Batch is required")
	case c.Pool == nil:
		return errors.New("consumer: Pool is required")
	}
	return nil
}

// Runner consumes one service's topics; see the package doc.
type Runner struct {
	cfg      Config
	log      *slog.Logger
	group    string
	dlqTopic string
	events   map[string]bool // Config.Events; nil: every event
	metrics  *metrics
	outage   *retry.Outage              // infrastructure failures being waited out
	joint    *joiner                    // batch transactions across partitions
	client   atomic.Pointer[kgo.Client] // while Run runs, for the lag metric
	trace    *tracing                   // nil when tracing is off
	pool     *pgxpool.Pool              // the consumer's own, set by Run before anything uses it
	// dlqFailing is the last dead-letter write's error while it fails.
	dlqFailing atomic.Pointer[error]
	kafka      []kgo.Opt // the client's instrumentation

	// afterCommit is a test hook run after a record's transaction
	// committed and before its offset is recorded for commit: when it
	// returns true the runner stops as if the process died there,
	// committing no more offsets.
	afterCommit func(Message) bool
}

// New returns the runner for cfg. Call inbox.Migrate on cfg.Pool first.
func New(cfg Config, log *slog.Logger) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	r := &Runner{
		cfg:      cfg,
		log:      log.With("component", "consumer", "group", "orderflow-"+cfg.Service),
		group:    GroupName(cfg.Service),
		dlqTopic: DLQTopic(cfg.Service),
	}
	if cfg.Events != nil {
		r.events = make(map[string]bool, len(cfg.Events))
		for _, e := range cfg.Events {
			r.events[e] = true
		}
	}
	r.metrics = newMetrics(r, cfg.Registerer)
	var kt *kotel.Tracer
	r.kafka, kt = kafka.Instrument(kafka.Instrumentation{
		ClientID: r.group + "-consumer", Registerer: cfg.Registerer, Tracing: cfg.Tracing, Group: r.group,
		Security: cfg.Kafka,
	})
	r.trace = newTracing(cfg.Tracing, kt, cfg.Service)
	r.joint = newJoiner(r)
	r.outage = retry.NewOutage("consumer", cfg.Registerer)
	return r, nil
}

// Ready reports whether Run is running, a broker answers and no partition
// is waiting for the infrastructure (package retry).
func (r *Runner) Ready(ctx context.Context) error {
	cl := r.client.Load()
	if cl == nil {
		return errors.New("consumer not running")
	}
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	if p := r.dlqFailing.Load(); p != nil {
		// A partition waits behind a record it cannot set aside.
		return *p
	}
	return r.outage.Err()
}

// DLQTopic is the dead-letter topic of a service's consumer.
func DLQTopic(service string) string { return "dlq." + service }

// GroupName is the service's consumer group, orderflow-<service>.
func GroupName(service string) string { return "orderflow-" + service }

// Group is the consumer group id.
func (r *Runner) Group() string { return r.group }

// errSimulatedCrash is the cause Run stops with when the afterCommit hook
// fires.
var errSimulatedCrash = errors.New("simulated crash after the transaction committed")

// maxQueued is how many polled records a partition may have waiting before
// its fetching is paused, so a partition stuck in retries does not pile up
// memory while the others keep flowing.
const maxQueued = 1000

// DefaultTransactions is Config.Transactions' default: the connections of
// a consumer's own pool.
const DefaultTransactions = 2

// ownPool opens the consumer's pool: Pool's configuration with
// Transactions connections and its own application_name. Behind the
// service's pool its transactions would queue with the requests: under a
// flood of POST /orders every batch waited for hundreds of requests
// ahead of it, and the orders consumer fell behind by thousands of
// records a second.
func (r *Runner) ownPool(ctx context.Context) (*pgxpool.Pool, error) {
	pcfg := r.cfg.Pool.Config().Copy()
	pcfg.MaxConns, pcfg.MinConns = int32(r.cfg.Transactions), 0
	base := pcfg.ConnConfig.RuntimeParams["application_name"]
	if base == "" {
		base = "orderflow-" + r.cfg.Service
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = base + "-consumer"
	return pgxpool.NewWithConfig(ctx, pcfg)
}

// Run consumes until ctx is done, then drains: each partition finishes the
// record in hand, the offsets of handled records are committed and the
// group is left. It returns nil after a clean shutdown.
func (r *Runner) Run(ctx context.Context) error {
	pool, err := r.ownPool(ctx)
	if err != nil {
		return fmt.Errorf("consumer: pool: %w", err)
	}
	defer pool.Close()
	r.pool = pool
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	s := &session{r: r, parts: make(map[topicPartition]*partition)}
	s.committer = newCommitter(s)
	s.crash = func() {
		s.crashed.Store(true)
		stop(errSimulatedCrash)
	}
	cl, err := kgo.NewClient(append(slices.Clone(r.kafka),
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ConsumerGroup(r.group),
		kgo.ConsumeTopics(r.cfg.Topics...),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		// A member that died without leaving (kill -9, a lost host) holds
		// its partitions until its session times out: 10 s rather than
		// franz-go's 45 s, so a restarted instance takes them back soon.
		// Heartbeats every second keep a live member well inside it.
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(time.Second),
		kgo.DisableAutoCommit(),
		// Assignment changes only between polls, so the poll loop always
		// finds the goroutine of each partition it got records for.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(s.assigned),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
		// A new group starts at the beginning: events emitted before a
		// service first ran are still handled.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return fmt.Errorf("consumer: kafka client: %w", err)
	}
	s.cl = cl
	r.client.Store(cl)
	defer r.client.Store(nil)

	commitCtx, stopCommitting := context.WithCancel(context.Background())
	committing := make(chan struct{})
	go func() {
		defer close(committing)
		s.committer.run(commitCtx)
	}()
	endCommits := sync.OnceFunc(func() {
		stopCommitting()
		<-committing
	})
	defer endCommits()

	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		r.pruneInbox(ctx)
	}()
	defer func() {
		stop(nil)
		<-pruned
	}()

	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				r.log.Warn("fetch", "topic", topic, "partition", p, "err", err)
			}
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				s.push(p.Topic, p.Partition, p.Records)
			}
		})
		cl.AllowRebalance()
	}
	cl.AllowRebalance()

	// Drain: every partition finishes the record in hand and commits what
	// it did; then the group is left.
	s.stopAll() // flushes the committer
	endCommits()
	cl.Close()
	if s.crashed.Load() {
		return errSimulatedCrash
	}
	return nil
}

// pruneInbox deletes inbox rows past the retention until ctx is done.
// Every instance of the service does it; concurrent deletes are harmless.
func (r *Runner) pruneInbox(ctx context.Context) {
	every := min(r.cfg.InboxRetention/10, time.Hour)
	for clock.Sleep(ctx, every) {
		n, err := inbox.Prune(ctx, r.pool, time.Now().Add(-r.cfg.InboxRetention))
		if err != nil && ctx.Err() == nil {
			r.log.Warn("inbox retention", "err", err)
		} else if n > 0 {
			r.log.Info("inbox retention deleted handled event ids", "rows", n)
		}
	}
}

type topicPartition struct {
	topic     string
	partition int32
}

// session is one Run's state: the client and its partition goroutines.
type session struct {
	r         *Runner
	cl        *kgo.Client
	committer *committer
	crash     func()
	crashed   atomic.Bool // the test hook fired: commit nothing more

	mu       sync.Mutex
	parts    map[topicPartition]*partition
	stopping bool // set by stopAll: a late assignment starts nothing
	wg       sync.WaitGroup
}

// partition is one assigned partition's queue and goroutine.
type partition struct {
	tp topicPartition

	// stop is cancelled to make the goroutine commit and return after the
	// record in hand; work, the handler's context, is cancelled first when
	// the partition is lost, and then nothing is committed.
	stop, work             context.Context
	cancelStop, cancelWork context.CancelFunc
	done                   chan struct{}
	last                   *kgo.Record // the last record finished and not committed

	mu     sync.Mutex
	queue  []*kgo.Record
	paused bool
	ready  chan struct{} // capacity 1: queue is not empty
}

func (s *session) assigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		// Draining: the partitions stay uncommitted here and go to the
		// next owner once this member has left.
		return
	}
	for topic, ps := range assigned {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			if s.parts[tp] != nil {
				continue
			}
			pc := &partition{tp: tp, done: make(chan struct{}), ready: make(chan struct{}, 1)}
			pc.stop, pc.cancelStop = context.WithCancel(context.Background())
			pc.work, pc.cancelWork = context.WithCancel(context.Background())
			s.parts[tp] = pc
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer close(pc.done)
				s.consume(pc)
			}()
		}
	}
}

// revoked stops the revoked partitions' goroutines, which commit what they
// finished, before the partitions go to another member.
func (s *session) revoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	s.stopPartitions(revoked, false)
}

// lost abandons the lost partitions: another member may own them already,
// so nothing is committed.
func (s *session) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.stopPartitions(lost, true)
}

func (s *session) stopPartitions(tps map[string][]int32, abandon bool) {
	var stopped []*partition
	s.mu.Lock()
	for topic, ps := range tps {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			if pc := s.parts[tp]; pc != nil {
				stopped = append(stopped, pc)
				delete(s.parts, tp)
			}
		}
	}
	s.mu.Unlock()
	s.halt(stopped, abandon)
}

func (s *session) stopAll() {
	s.mu.Lock()
	s.stopping = true
	all := make([]*partition, 0, len(s.parts))
	for tp, pc := range s.parts {
		all = append(all, pc)
		delete(s.parts, tp)
	}
	s.mu.Unlock()
	s.halt(all, false)
	s.wg.Wait()
}

func (s *session) halt(ps []*partition, abandon bool) {
	for _, pc := range ps {
		if abandon {
			pc.cancelWork()
		}
		pc.cancelStop()
	}
	for _, pc := range ps {
		<-pc.done
	}
	if !abandon {
		// What the stopped goroutines finished is committed before their
		// partitions go to another member or the group is left.
		s.committer.flush()
	}
	for _, pc := range ps {
		pc.cancelWork()
		pc.mu.Lock()
		if pc.paused {
			// A later owner, maybe this member again, must fetch it.
			s.cl.ResumeFetchPartitions(map[string][]int32{pc.tp.topic: {pc.tp.partition}})
		}
		pc.mu.Unlock()
	}
}

// push hands polled records to their partition's goroutine without
// blocking the poll loop, pausing the partition's fetches while its queue
// is long.
func (s *session) push(topic string, p int32, recs []*kgo.Record) {
	s.mu.Lock()
	pc := s.parts[topicPartition{topic, p}]
	s.mu.Unlock()
	if pc == nil {
		return // not assigned any more; the next owner reads them again
	}
	pc.mu.Lock()
	pc.queue = append(pc.queue, recs...)
	if len(pc.queue) >= maxQueued && !pc.paused {
		pc.paused = true
		s.cl.PauseFetchPartitions(map[string][]int32{topic: {p}})
	}
	pc.mu.Unlock()
	select {
	case pc.ready <- struct{}{}:
	default:
	}
}

// take empties pc's queue, resuming fetches when they were paused.
func (s *session) take(pc *partition) []*kgo.Record {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	recs := pc.queue
	pc.queue = nil
	if pc.paused {
		pc.paused = false
		s.cl.ResumeFetchPartitions(map[string][]int32{pc.tp.topic: {pc.tp.partition}})
	}
	return recs
}

// consume handles pc's records in order until pc is stopped, committing
// after each batch it took and when it stops.
func (s *session) consume(pc *partition) {
	defer s.commit(pc)
	for {
		select {
		case <-pc.stop.Done():
			return
		case <-pc.ready:
		}
		recs := s.take(pc)
		for len(recs) > 0 {
			if pc.stop.Err() != nil {
				return
			}
			n, failed, ok := s.r.processBatch(s, pc, recs)
			if !ok {
				return // abandoned: the records are redelivered
			}
			if n > 0 {
				pc.last, recs = recs[n-1], recs[n:]
			}
			if n == 0 || failed != nil {
				// One record on its own: not batchable, or its handler
				// failed in the batch (that counts as its first attempt).
				if !s.r.process(s, pc, recs[0], failed) {
					return // abandoned: the record is redelivered
				}
				pc.last, recs = recs[0], recs[1:]
			}
		}
		s.commit(pc)
	}
}

// commit hands the offset after pc's last finished record to the
// session's committer (commit.go), which commits it soon with the other
// partitions' unless the partition was lost (another member may own it)
// or the runner crashed on purpose. A failed commit is retried; records
// not committed when a crash comes are redelivered and the inbox
// deduplicates them.
func (s *session) commit(pc *partition) { s.committer.offer(pc) }

// headerMap returns the last value of each header key.
func headerMap(hs []kgo.RecordHeader) map[string]string {
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}

// dlqRecord is rec unchanged plus the dead-letter headers.
func (r *Runner) dlqRecord(rec *kgo.Record, cause error, attempts int) *kgo.Record {
	hs := slices.Clone(rec.Headers)
	hs = append(hs,
		kgo.RecordHeader{Key: "x-dlq-topic", Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: "x-dlq-partition", Value: fmt.Appendf(nil, "%d", rec.Partition)},
		kgo.RecordHeader{Key: "x-dlq-offset", Value: fmt.Appendf(nil, "%d", rec.Offset)},
		kgo.RecordHeader{Key: "x-dlq-error", Value: []byte(cause.Error())},
		kgo.RecordHeader{Key: "x-dlq-attempts", Value: fmt.Appendf(nil, "%d", attempts)},
	)
	return &kgo.Record{Topic: r.dlqTopic, Key: rec.Key, Value: rec.Value, Headers: hs, Timestamp: rec.Timestamp}
}

// Decode unmarshals the message's event into ev. The runner has checked the
// event against its schema, so a failure cannot be fixed by retrying: the
// error wraps ErrPermanent.
func (m Message) Decode(ev contract.Event) error {
	if err := json.Unmarshal(m.Value, ev); err != nil {
		return fmt.Errorf("decode %s: %v: %w", m.Envelope.Event, err, ErrPermanent)
	}
	return nil
}

// ParseOrderID parses an event's orderId. Services key their rows by the
// UUID; an orderId that is not one cannot be handled, so the error wraps
// ErrPermanent.
func ParseOrderID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("orderId %q: %v: %w", s, err, ErrPermanent)
	}
	return id, nil
}
