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

	"github.com/orderflow/orderflow/pkg/events/rabbit"
	"github.com/orderflow/orderflow/services/email/internal/emaildb"
)

// deliverer is the queue worker's handler: it sends one task's email and
// records it sent before the message is acked.
type deliverer struct {
	pool   *pgxpool.Pool
	sent   *sentRecorder
	mailer mailer
	from   string // the From header
	sender string // its address, the SMTP envelope sender
	log    *slog.Logger
}

// claimStale is how long a claim (status sending) holds off other copies
// of the task: longer than one SMTP exchange may take (dial, commands and
// data timeouts), so only a worker that died mid-send loses its claim.
const claimStale = time.Minute

// errInProgress: another copy of the task is being sent right now; this
// one goes the retry path and will find it sent.
var errInProgress = errors.New("another delivery of this task is sending it")

// handle sends the task of d unless it was sent before. It first claims
// the task (status sending), so two copies in hand at once do not both
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
		return fmt.Errorf("build message: %w: %w", err, rabbit.ErrPermanent)
	}
	if err := dl.mailer.send(ctx, dl.sender, t.address(), msg); err != nil {
		return err
	}
	// Sent: record it, insisting, since a failure here must not send
	// again; the message is not forwarded to a retry queue whatever
	// happens now, only left unacked when the service stops.
	wait := 50 * time.Millisecond
	for {
		err := dl.sent.record(t.TaskID, d.Attempt)
		if err == nil {
			dl.log.InfoContext(ctx, "email sent", "task_id", t.TaskID, "kind", t.Kind, "attempt", d.Attempt)
			return nil
		}
		if errors.Is(err, errRecorderStopped) {
			return fmt.Errorf("email %s sent but not recorded at shutdown: %w", t.TaskID, rabbit.ErrRequeue)
		}
		dl.log.ErrorContext(ctx, "email sent but not recorded; retrying the record", "task_id", t.TaskID, "err", err)
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
	}
}

var errAlreadySent = errors.New("already sent")

// claim takes the task for this delivery (see handle); errAlreadySent
// when it was sent, errInProgress when another delivery holds it.
func (dl *deliverer) claim(ctx context.Context, t task) error {
	q := emaildb.New(dl.pool)
	for range 2 {
		n, err := q.ClaimEmail(ctx, emaildb.ClaimEmailParams{TaskID: t.TaskID, StaleSeconds: claimStale.Seconds()})
		if err != nil {
			return fmt.Errorf("claim email: %w", err)
		}
		if n == 1 {
			return nil
		}
		status, err := q.EmailStatus(ctx, t.TaskID)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// Published by someone other than the notifier (a replay, a
			// test): given a row, so its send is recorded like any other.
			if _, err := q.InsertEmail(ctx, emaildb.InsertEmailParams{TaskID: t.TaskID, OrderID: t.OrderID, Kind: t.Kind, ToAddr: t.To, Subject: t.Subject}); err != nil {
				return fmt.Errorf("insert email: %w", err)
			}
			continue // and claim it
		case err != nil:
			return fmt.Errorf("email status: %w", err)
		case status == "sent":
			return errAlreadySent
		default:
			return errInProgress
		}
	}
	return errInProgress
}

// failed records a failed attempt's outcome on the task's row.
func (dl *deliverer) failed(ctx context.Context, d *rabbit.Delivery, o rabbit.Outcome) {
	id, err := uuid.Parse(d.MessageId)
	if err != nil {
		return // not one of ours: no row
	}
	if errors.Is(o.Err, errInProgress) && !o.Dead {
		return // the row is another delivery's, which is sending it
	}
	err = emaildb.New(dl.pool).MarkFailed(ctx, emaildb.MarkFailedParams{
		TaskID: id, Attempts: int32(o.Attempt), LastError: o.Err.Error(), Dead: o.Dead,
	})
	if err != nil {
		dl.log.WarnContext(ctx, "could not record a failed attempt", "task_id", id, "err", err)
	}
}
