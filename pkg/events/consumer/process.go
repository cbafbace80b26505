package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/inbox"
	"github.com/orderflow/orderflow/pkg/events/internal/clock"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/retry"
)

// Results counted in orderflow_consumer_handled_total.
const (
	resultOK        = "ok"
	resultDuplicate = "duplicate"
	resultRetry     = "retry"
	resultDead      = "dead"
	resultSkipped   = "skipped"
	resultIgnored   = "ignored"
)

// errSkip marks a valid envelope of an event or version without a schema
// here, errIgnored one of an event the service does not handle (see the
// package doc).
var (
	errSkip    = errors.New("unknown event from a newer producer")
	errIgnored = errors.New("event not handled by this service")
)

// decode checks rec's envelope and, for an event the service handles, its
// schema. It returns errSkip for an unknown event and errIgnored for one
// not in Config.Events, both with a valid envelope, and any other error for
// a record that belongs in the DLQ at once.
func (r *Runner) decode(rec *kgo.Record) (Message, uuid.UUID, error) {
	hs := headerMap(rec.Headers)
	msg := Message{
		Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
		Key: string(rec.Key), Headers: hs, Value: rec.Value,
		CorrelationID: hs[strings.ToLower(correlation.Header)],
	}
	if err := json.Unmarshal(rec.Value, &msg.Envelope); err != nil {
		return msg, uuid.Nil, fmt.Errorf("malformed envelope: %w", err)
	}
	env := msg.Envelope
	var missing []string
	if env.Event == "" {
		missing = append(missing, "event")
	}
	if env.Version < 1 {
		missing = append(missing, "version")
	}
	if env.EventID == "" {
		missing = append(missing, "eventId")
	}
	if env.OrderID == "" {
		missing = append(missing, "orderId")
	}
	if len(missing) > 0 {
		return msg, uuid.Nil, fmt.Errorf("malformed envelope: missing %s", strings.Join(missing, ", "))
	}
	id, err := uuid.Parse(env.EventID)
	if err != nil {
		return msg, uuid.Nil, fmt.Errorf("malformed envelope: eventId %q: %w", env.EventID, err)
	}
	if r.events != nil && !r.events[env.Event] {
		return msg, id, errIgnored
	}
	if !contract.Known(env.Event, env.Version) {
		if known := contract.Versions(env.Event); len(known) > 0 {
			// An event this service handles, at a version it cannot read: a
			// producer upgraded before its consumers. Skipping would lose
			// the effect without a trace, so it is dead-lettered, loudly,
			// to be replayed once this service knows the version.
			return msg, id, fmt.Errorf("%s version %d is unknown to this build, which knows versions %v: "+
				"upgrade the consumer, then replay the dead letter", env.Event, env.Version, known)
		}
		return msg, id, errSkip
	}
	if err := contract.Validate(env.Event, env.Version, rec.Value); err != nil {
		return msg, id, err
	}
	return msg, id, nil
}

// process handles one record to its end: committed, duplicate, skipped or
// dead-lettered (true), or abandoned because the partition was stopped or
// the runner crashed on purpose (false), in which case it is redelivered.
// prior, when not nil, is the error of an attempt already made in a batch.
func (r *Runner) process(s *session, pc *partition, rec *kgo.Record, prior error) bool {
	start := time.Now()
	defer func() { r.metrics.handleSeconds.WithLabelValues(rec.Topic).Observe(time.Since(start).Seconds()) }()

	msg, eventID, err := r.decode(rec)
	r.trace.start(rec, &msg)
	var failed error // the last attempt's, for the span
	defer func() { endSpan(msg, failed) }()
	ctx := msg.Context(pc.work)
	log := r.log.With("topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset)
	if eventID != uuid.Nil {
		log = log.With("event_id", eventID.String())
	}
	switch {
	case errors.Is(err, errSkip):
		log.InfoContext(ctx, "skipping unknown event", "event", msg.Envelope.Event, "version", msg.Envelope.Version)
		r.metrics.count(rec.Topic, resultSkipped)
		return true
	case errors.Is(err, errIgnored):
		r.metrics.count(rec.Topic, resultIgnored)
		return true
	case err != nil:
		failed = err
		return r.deadLetter(ctx, s.cl, pc, rec, err, 0)
	}

	// prior is a failed attempt made in a batch: it counts as the first
	// unless the infrastructure failed it.
	err = prior
	var (
		spent  int           // attempts the handler's own errors failed
		streak int           // infrastructure failures in a row
		waited time.Duration // spent waiting for the infrastructure: not retry time
	)
	for {
		if err != nil {
			failed = err
			recordAttempt(ctx, err)
			if pc.work.Err() != nil {
				return false // partition lost
			}
			if retry.Infrastructure(err) {
				// The database or a broker is away: wait for it as long as
				// it takes, spending no attempt; the partition waits too, so
				// its order holds (see package retry).
				streak++
				if streak == 1 || streak%20 == 0 {
					log.WarnContext(ctx, "infrastructure failure; waiting, no attempt spent", "failures", streak, "err", err)
				}
				began := time.Now()
				ok := r.outage.Wait(pc.stop, streak, err)
				waited += time.Since(began)
				if !ok {
					return false // revoked or shutting down: the next owner retries
				}
			} else {
				streak = 0
				r.outage.Recovered() // the handler ran: the infrastructure answered
				spent++
				wait := r.backoff(spent)
				if errors.Is(err, ErrPermanent) || spent >= r.cfg.MaxAttempts || time.Since(start)-waited+wait > r.cfg.MaxRetryTime {
					return r.deadLetter(ctx, s.cl, pc, rec, err, spent)
				}
				r.metrics.count(rec.Topic, resultRetry)
				log.WarnContext(ctx, "handler failed; will retry", "attempt", spent, "retry_in", wait, "err", err)
				if !clock.Sleep(pc.stop, wait) {
					return false // revoked or shutting down: the next owner retries
				}
			}
		}
		var dup bool
		dup, err = r.handleOnce(ctx, msg, eventID)
		if err == nil {
			failed = nil
			r.outage.Recovered()
			if dup {
				r.metrics.count(rec.Topic, resultDuplicate)
				return true
			}
			if r.cfg.AfterCommit != nil {
				r.cfg.AfterCommit()
			}
			if r.afterCommit != nil && r.afterCommit(msg) {
				s.crash()
				return false
			}
			r.metrics.count(rec.Topic, resultOK)
			return true
		}
	}
}

// handleOnce runs one attempt in its own transaction and reports whether
// the event was a duplicate.
func (r *Runner) handleOnce(ctx context.Context, msg Message, eventID uuid.UUID) (dup bool, err error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil || dup {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	// The order's lock comes before the first write, which draws the
	// transaction id: the service's outbox orders one order's events by it
	// (see outbox.LockKey), and the handler's events must follow those of
	// any transaction that committed before it for the same order.
	if err := outbox.LockKey(ctx, tx, msg.Envelope.OrderID); err != nil {
		return false, err
	}
	fresh, err := inbox.Claim(ctx, tx, eventID, msg.Topic, msg.Partition, msg.Offset)
	if err != nil {
		return false, err
	}
	if !fresh {
		return true, nil
	}
	if err := r.runHandler(ctx, tx, []Message{msg}); err != nil {
		if re, ok := errors.AsType[*RecordError](err); ok {
			err = re.Err // alone, every error is the record's
		}
		return false, err
	}
	// A commit error may hide a commit that happened: the retry then finds
	// the inbox row and counts a duplicate.
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return false, nil
}

// runHandler calls the BatchHandler, turning a panic into an error so one
// bad event cannot take the service down; it is retried, then
// dead-lettered.
func (r *Runner) runHandler(ctx context.Context, tx pgx.Tx, msgs []Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return r.cfg.Batch(ctx, tx, msgs)
}

// backoff is the wait after the given failed attempt: full jitter, uniform
// in [0, BaseBackoff * 2^(attempt-1)], the ceiling capped at MaxRetryTime.
func (r *Runner) backoff(attempt int) time.Duration {
	ceiling := r.cfg.BaseBackoff << min(attempt-1, 30)
	if ceiling <= 0 || ceiling > r.cfg.MaxRetryTime {
		ceiling = r.cfg.MaxRetryTime
	}
	return rand.N(ceiling + 1)
}

// deadLetter writes rec to the DLQ and waits for the ack, retrying the
// write until it succeeds or the partition is stopped (false: the record is
// redelivered and dead-lettered again by its next owner).
func (r *Runner) deadLetter(ctx context.Context, cl *kgo.Client, pc *partition, rec *kgo.Record, cause error, attempts int) bool {
	out := r.dlqRecord(rec, cause, attempts)
	out.Context = ctx // its publish span is a child of the record's process span
	wait := r.cfg.BaseBackoff
	for {
		err := cl.ProduceSync(pc.stop, out).FirstErr()
		if err == nil {
			r.dlqFailing.Store(nil)
			r.metrics.count(rec.Topic, resultDead)
			r.log.WarnContext(ctx, "record dead-lettered", "topic", rec.Topic, "partition", rec.Partition,
				"offset", rec.Offset, "dlq", r.dlqTopic, "attempts", attempts, "err", cause)
			return true
		}
		if pc.stop.Err() != nil {
			return false
		}
		failing := fmt.Errorf("cannot dead-letter %s[%d]@%d to %s, the partition waits: %w", rec.Topic, rec.Partition, rec.Offset, r.dlqTopic, err)
		r.dlqFailing.Store(&failing)
		r.log.ErrorContext(ctx, "dead-letter write failed; will retry", "dlq", r.dlqTopic, "err", err)
		if !clock.Sleep(pc.stop, wait) {
			return false
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// processBatch handles the leading well-formed records of recs, at most
// MaxBatch, in one transaction (see "Batching" in the package doc); records
// of events the service does not handle (Config.Events) ride along without
// touching the database. It returns how many it finished, n, and, when the
// Handler failed on recs[n], that error (the caller then goes on with
// recs[n] as a record whose first attempt failed). The batch may share its
// transaction with other partitions' (joiner). n = 0 with no error:
// batching is off, recs[0] is not well-formed, or the batch failed
// otherwise; the caller handles recs[0] on its own. ok is false when the runner crashed on
// purpose after a commit (a test hook).
func (r *Runner) processBatch(s *session, pc *partition, recs []*kgo.Record) (n int, failed error, ok bool) {
	if r.cfg.MaxBatch < 2 {
		return 0, nil, true
	}
	b := batch{msgs: make([]Message, 0, min(len(recs), r.cfg.MaxBatch))}
	for _, rec := range recs[:cap(b.msgs)] {
		msg, id, err := r.decode(rec)
		if err != nil && !errors.Is(err, errIgnored) {
			break // skipped or dead-lettered on its own
		}
		r.trace.start(rec, &msg)
		b.add(msg, id, err != nil)
	}
	if len(b.msgs) == 0 {
		return 0, nil, true
	}
	attempted := b.msgs // b shrinks to a prefix when the batch fails part-way
	defer func() {
		endSpans(attempted[:n], nil)
		endSpans(attempted[n:], errNotCommitted)
	}()
	start := time.Now()
	dups, failedAt, err := r.joint.handle(pc.work, b)
	if err != nil && failedAt > 0 {
		// The records before the failing one succeeded in the rolled-back
		// transaction: commit them, then the caller retries the failing one.
		failed = err
		b = b.prefix(failedAt)
		dups, _, err = r.handleBatch(pc.work, b)
	}
	if err != nil {
		r.log.Debug("batch failed; handling its records one by one", "topic", pc.tp.topic,
			"partition", pc.tp.partition, "records", len(b.msgs), "err", err)
		if failedAt == 0 && !errors.Is(err, ErrBatchConflict) {
			return 0, err, true
		}
		return 0, nil, true
	}
	r.outage.Recovered() // the batch committed: the database answers
	if errors.Is(failed, ErrBatchConflict) {
		failed = nil // not a failure: the next batch starts with that record
	}
	if r.cfg.AfterCommit != nil && len(b.work) > 0 {
		r.cfg.AfterCommit()
	}
	each := time.Since(start).Seconds() / float64(len(b.msgs))
	for i, msg := range b.msgs {
		r.metrics.handleSeconds.WithLabelValues(msg.Topic).Observe(each)
		switch {
		case b.ignored[i]:
			r.metrics.count(msg.Topic, resultIgnored)
			continue
		case dups[i]:
			r.metrics.count(msg.Topic, resultDuplicate)
			continue
		}
		if r.afterCommit != nil && r.afterCommit(msg) {
			s.crash()
			return i, nil, false
		}
		r.metrics.count(msg.Topic, resultOK)
	}
	return len(b.msgs), failed, true
}

// batch is the records of one batch transaction.
type batch struct {
	msgs    []Message
	ids     []uuid.UUID
	ignored []bool // msgs[i] is an event the service does not handle
	work    []int  // indexes of the others, in order
}

func (b *batch) add(msg Message, id uuid.UUID, ignored bool) {
	if !ignored {
		b.work = append(b.work, len(b.msgs))
	}
	b.msgs, b.ids, b.ignored = append(b.msgs, msg), append(b.ids, id), append(b.ignored, ignored)
}

// prefix is the batch of the first n records.
func (b batch) prefix(n int) batch {
	var p batch
	for i := range n {
		p.add(b.msgs[i], b.ids[i], b.ignored[i])
	}
	return p
}

// handleBatch runs b in one transaction: the order keys of its handled
// records locked in sorted order first (one statement), their eventIds
// claimed in the inbox (one statement), then the BatchHandler once with
// the fresh ones in order. It reports which messages were duplicates; when
// the handler failed on one (a RecordError), failedAt is that
// message's index (else -1) and the transaction is rolled back.
func (r *Runner) handleBatch(ctx context.Context, b batch) (dups []bool, failedAt int, err error) {
	failedAt = -1
	dups = make([]bool, len(b.msgs))
	if len(b.work) == 0 {
		return dups, -1, nil
	}
	ctx, span := r.trace.batch(ctx, b.msgs)
	if span != nil {
		defer func() { endBatchSpan(span, err) }()
	}
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, -1, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	keys := make([]string, 0, len(b.work))
	entries := make([]inbox.Entry, 0, len(b.work))
	for _, i := range b.work {
		m := b.msgs[i]
		keys = append(keys, m.Envelope.OrderID)
		entries = append(entries, inbox.Entry{EventID: b.ids[i], Topic: m.Topic, Partition: m.Partition, Offset: m.Offset})
	}
	if err := outbox.LockKeys(ctx, tx, keys); err != nil {
		return nil, -1, err
	}
	fresh, err := inbox.ClaimAll(ctx, tx, entries)
	if err != nil {
		return nil, -1, err
	}
	todo := make([]Message, 0, len(b.work))
	at := make([]int, 0, len(b.work)) // todo[j] is b.msgs[at[j]]
	for j, i := range b.work {
		if fresh[j] {
			todo, at = append(todo, b.msgs[i]), append(at, i)
		} else {
			dups[i] = true
		}
	}
	if len(todo) > 0 {
		if err := r.runHandler(ctx, tx, todo); err != nil {
			if re, ok := errors.AsType[*RecordError](err); ok && re.Index >= 0 && re.Index < len(at) {
				return nil, at[re.Index], re.Err
			}
			return nil, -1, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, -1, fmt.Errorf("commit: %w", err)
	}
	return dups, -1, nil
}
