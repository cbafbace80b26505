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

// handle sends the task of d unless it was sent before. A task already
// marked sent is acked without sending: the message came again after a
// worker died between recording the send and acking (or was published
// twice). What is left is the window between the SMTP server's acceptance
// and the sent record committing: a crash there sends the email again, with
// the same Message-ID.
func (dl *deliverer) handle(ctx context.Context, d *rabbit.Delivery) error {
	t, err := decodeTask(d.Body)
	if err != nil {
		return fmt.Errorf("malformed message: %w: %w", err, rabbit.ErrPermanent)
	}
	q := emaildb.New(dl.pool)
	status, err := q.EmailStatus(ctx, t.TaskID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// Published by someone other than the notifier (a replay, a
		// test): given a row, so its send is recorded like any other.
		if _, err := q.InsertEmail(ctx, emaildb.InsertEmailParams{TaskID: t.TaskID, OrderID: t.OrderID, Kind: t.Kind, ToAddr: t.To, Subject: t.Subject}); err != nil {
			return fmt.Errorf("insert email: %w", err)
		}
	case err != nil:
		return fmt.Errorf("email status: %w", err)
	case status == "sent":
		dl.log.InfoContext(ctx, "email sent before; acking the repeat", "task_id", t.TaskID)
		return nil
	}
	msg, err := buildMessage(dl.from, t, d.CorrelationID(), time.Now())
	if err != nil {
		return fmt.Errorf("build message: %w: %w", err, rabbit.ErrPermanent)
	}
	if err := dl.mailer.send(ctx, dl.sender, t.To, msg); err != nil {
		return err
	}
	// Sent: record it, insisting, since failing here means sending again.
	wait := 50 * time.Millisecond
	for {
		err := dl.sent.record(t.TaskID, d.Attempt)
		if err == nil {
			dl.log.InfoContext(ctx, "email sent", "task_id", t.TaskID, "kind", t.Kind, "attempt", d.Attempt)
			return nil
		}
		dl.log.ErrorContext(ctx, "email sent but not recorded; retrying the record", "task_id", t.TaskID, "err", err)
		if wait > 5*time.Second || errors.Is(err, errRecorderStopped) {
			return fmt.Errorf("record sent: %w", err)
		}
		time.Sleep(wait)
		wait *= 2
	}
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
}
