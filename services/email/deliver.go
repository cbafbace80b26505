package email

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/events/rabbit"
	"github.com/orderflow/orderflow/services/email/internal/emaildb"
)

// deliverer is the queue worker's handler: it sends one task's email and
// records it sent before the message is acked.
type deliverer struct {
	pool   *pgxpool.Pool
	ledger *batcher[entry, bool] // newLedger: claims and sent records
	mailer mailer
	from   string // the From header
	sender string // its address, the SMTP envelope sender
	log    *slog.Logger
	tracer trace.Tracer // the SMTP send's span; nil when tracing is off
}

// send hands the message to the mailer, under a client span when tracing
// is on: the trace of an order ends where the SMTP server took its email.
func (dl *deliverer) send(ctx context.Context, t task, msg []byte) error {
	if dl.tracer == nil {
		return dl.mailer.send(ctx, dl.sender, t.address(), msg)
	}
	ctx, span := dl.tracer.Start(ctx, "smtp send", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("orderflow.email.kind", t.Kind),
			attribute.String("orderflow.email.task_id", t.TaskID.String()),
			attribute.String("orderflow.order_id", t.OrderID.String()),
		))
	defer span.End()
	err := dl.mailer.send(ctx, dl.sender, t.address(), msg)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// defaultClaimStale is how long a claim (claimed_at) holds off other
// copies of the task: well over the longest SMTP exchange (dial 5 s, NOOP,
// greeting, EHLO, MAIL, RCPT and DATA 10 s each, the message and its reply
// 30 s: 95 s), so only a worker that died mid-send loses its claim.
const defaultClaimStale = 5 * time.Minute

// dbTimeout bounds the deliverer's own statements. They run on a context
// detached from the worker's session: a channel lost mid-message must not
// leave a claim half taken or a failed send unreleased.
const dbTimeout = 10 * time.Second

var errAlreadySent = errors.New("already sent")

// handle sends the task of d unless it was sent before. It first claims
// the task (claimed_at), so two copies in hand at once do not both
// send; a task already sent is acked without sending (a redelivery after a
// worker died between recording and acking, or a copy published twice).
// What is left is the window between the SMTP server's acceptance and the
// sent record committing: a crash there sends the email again, with the
// same Message-ID.
func (dl *deliverer) handle(ctx context.Context, d *rabbit.Delivery) error {
	t, err := decodeTask(d.Body)
	if err != nil {
		return fmt.Errorf("malformed message: %w: %w", err, rabbit.ErrPermanent)
	}
	if err := dl.claim(ctx, t); err != nil {
		if errors.Is(err, errAlreadySent) {
			dl.log.InfoContext(ctx, "email sent before; acking the repeat", "task_id", t.TaskID)
			return nil
		}
		return err
	}
	msg, err := buildMessage(dl.from, t, d.CorrelationID(), time.Now())
	if err != nil {
		err = fmt.Errorf("build message: %w: %w", err, rabbit.ErrPermanent)
	} else {
		err = dl.send(ctx, t, msg)
	}
	if err != nil {
		dl.release(ctx, t.TaskID)
		return err
	}
	// Sent: record it, insisting, since a failure here must not send
	// again; the message is not forwarded to a retry queue whatever
	// happens now, only left unacked when the service stops.
	wait := 50 * time.Millisecond
	for {
		_, err := dl.ledger.do(entry{id: t.TaskID, sent: true, attempt: int32(d.Attempt)})
		if err == nil {
			dl.log.InfoContext(ctx, "email sent", "order_id", t.OrderID, "event_id", t.TaskID, "task_id", t.TaskID,
				"kind", t.Kind, "attempt", d.Attempt)
			return nil
		}
		if errors.Is(err, errBatcherStopped) || ctx.Err() != nil {
			// The session ended (shutdown or a lost channel): the message
			// is redelivered either way, and a database that stays down
			// must not hold the stop forever.
			return fmt.Errorf("email %s sent but not recorded before the worker's session ended: %w", t.TaskID, rabbit.ErrRequeue)
		}
		dl.log.ErrorContext(ctx, "email sent but not recorded; retrying the record", "task_id", t.TaskID, "err", err)
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
	}
}

// claimWait is how long a delivery waits for another one's claim before
// it steps aside (rabbit.ErrNotYet): long enough for a normal SMTP
// exchange to end, short enough that the copies of tasks a dead worker
// held do not fill every prefetch slot until their claims go stale.
const claimWait = 2 * time.Second

// claim takes the task for this delivery (see handle), or errAlreadySent.
// When another delivery holds the claim, claim waits a little for it to
// end: the task sent (errAlreadySent), released after a failure (claimed
// here), or the claim gone stale (taken over); after claimWait it returns
// an error wrapping rabbit.ErrNotYet, so the message comes again later
// without spending an attempt.
func (dl *deliverer) claim(ctx context.Context, t task) error {
	wait, deadline := 20*time.Millisecond, time.Now().Add(claimWait)
	for {
		claimed, status, err := dl.tryClaim(ctx, t)
		switch {
		case err != nil:
			return err
		case claimed:
			return nil
		case status == "sent":
			return errAlreadySent
		case time.Now().After(deadline):
			return fmt.Errorf("task %s is being sent by another delivery: %w", t.TaskID, rabbit.ErrNotYet)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// tryClaim claims the task once; when it could not, status is the task's
// status. A task without a row (published by someone other than
// the notifier: a replay, a test) is given one, so its send is recorded
// like any other.
func (dl *deliverer) tryClaim(ctx context.Context, t task) (claimed bool, status string, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	q := emaildb.New(dl.pool)
	for range 2 {
		claimed, err := dl.ledger.do(entry{id: t.TaskID})
		if err != nil || claimed {
			return claimed, "", err
		}
		status, err := q.EmailStatus(ctx, t.TaskID)
		if !errors.Is(err, pgx.ErrNoRows) {
			return false, status, wrapErr("email status", err)
		}
		if _, err := q.InsertEmail(ctx, emaildb.InsertEmailParams{TaskID: t.TaskID, OrderID: t.OrderID, Kind: t.Kind, ToAddr: t.To, Subject: t.Subject}); err != nil {
			return false, "", fmt.Errorf("insert email: %w", err)
		}
	}
	return false, "queued", nil // inserted, then claimed by another copy
}

// release gives the claim up after a failed send, so the retry (or a copy
// waiting in claim) may take it.
func (dl *deliverer) release(ctx context.Context, id uuid.UUID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	if err := emaildb.New(dl.pool).ReleaseEmail(ctx, id); err != nil {
		dl.log.WarnContext(ctx, "could not release a claim; it goes stale in a minute", "task_id", id, "err", err)
	}
}

func wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// failed records a failed attempt's outcome on the task's row.
func (dl *deliverer) failed(ctx context.Context, d *rabbit.Delivery, o rabbit.Outcome) {
	id, err := uuid.Parse(d.MessageId)
	if err != nil {
		return // not one of ours: no row
	}
	err = emaildb.New(dl.pool).MarkFailed(ctx, emaildb.MarkFailedParams{
		TaskID: id, Attempts: int32(o.Attempt), LastError: o.Err.Error(), Dead: o.Dead,
	})
	if err != nil {
		dl.log.WarnContext(ctx, "could not record a failed attempt", "task_id", id, "err", err)
	}
	if o.Dead {
		orderID := ""
		if t, err := decodeTask(d.Body); err == nil {
			orderID = t.OrderID.String()
		}
		dl.log.WarnContext(ctx, "email parked", "order_id", orderID, "event_id", id, "task_id", id,
			"attempt", o.Attempt, "err", o.Err)
	}
}
