package email

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/services/email/internal/emaildb"
)

// The notifier as it was before it took whole batches, a consumer.Handler
// of 4-5 statements per event: the reference TestBatchEqualsOneByOne holds
// the batch handler to, and BenchmarkNotifyBatch measures it against
// (through consumer.PerRecord).

// handleRecord is the notifier's former consumer.Handler.
func (n *notifier) handleRecord(ctx context.Context, tx pgx.Tx, msg consumer.Message) error {
	q := emaildb.New(tx)
	orderID, err := consumer.ParseOrderID(msg.Envelope.OrderID)
	if err != nil {
		return err
	}
	// remember keeps the order's recipient and, the first time, queues the
	// emails that were waiting for it.
	remember := func(customerID, email, currency string) error {
		isNew, err := q.RememberRecipient(ctx, emaildb.RememberRecipientParams{OrderID: orderID, CustomerID: customerID, Email: email, Currency: currency})
		if errors.Is(err, pgx.ErrNoRows) || err == nil && !isNew {
			return nil
		}
		if err != nil {
			return fmt.Errorf("remember recipient: %w", err)
		}
		waiting, err := q.TakeWaiting(ctx, orderID)
		if err != nil {
			return fmt.Errorf("take waiting emails: %w", err)
		}
		for _, w := range waiting {
			t := task{TaskID: taskID(w.EventID), OrderID: orderID, Kind: w.Kind, To: email}
			if err := n.enqueueRecord(ctx, tx, q, t, view{OrderID: orderID.String(), TrackingID: w.TrackingID}); err != nil {
				return err
			}
		}
		return nil
	}
	v := view{OrderID: orderID.String()}
	var kind, to string
	switch msg.Envelope.Event {
	case "OrderPlaced":
		var ev contract.OrderPlaced
		if err := msg.Decode(&ev); err != nil {
			return err
		}
		return remember(ev.CustomerID, ev.Email, ev.Currency)
	case "PaymentCaptured":
		var ev contract.PaymentCaptured
		if err := msg.Decode(&ev); err != nil {
			return err
		}
		if err := remember(ev.CustomerID, ev.Email, ev.Currency); err != nil {
			return err
		}
		kind, to, v.Amount = kindConfirmation, ev.Email, amount(ev.AmountCents, ev.Currency)
	case "PaymentFailed":
		var ev contract.PaymentFailed
		if err := msg.Decode(&ev); err != nil {
			return err
		}
		if err := remember(ev.CustomerID, ev.Email, ""); err != nil {
			return err
		}
		kind, to, v.Reason = kindPaymentFailed, ev.Email, ev.Reason
	case "PaymentRefunded":
		var ev contract.PaymentRefunded
		if err := msg.Decode(&ev); err != nil {
			return err
		}
		if err := remember(ev.CustomerID, ev.Email, ""); err != nil {
			return err
		}
		r, err := q.GetRecipient(ctx, orderID)
		if err != nil {
			return fmt.Errorf("get recipient: %w", err)
		}
		kind, to, v.Amount, v.Reason = kindRefunded, ev.Email, amount(ev.AmountCents, r.Currency), ev.Reason
	case "OrderShipped":
		var ev contract.OrderShipped
		if err := msg.Decode(&ev); err != nil {
			return err
		}
		r, err := q.GetRecipient(ctx, orderID)
		if errors.Is(err, pgx.ErrNoRows) {
			// No address yet: the email waits for the first event that
			// names one (remember).
			n.log.InfoContext(ctx, "shipping email waits for the order's recipient", "order_id", orderID)
			err := q.AddWaiting(ctx, emaildb.AddWaitingParams{EventID: msg.Envelope.EventID, OrderID: orderID, Kind: kindShipped, TrackingID: ev.TrackingID})
			if err != nil {
				return fmt.Errorf("add waiting email: %w", err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("get recipient: %w", err)
		}
		kind, to, v.TrackingID = kindShipped, r.Email, ev.TrackingID
	default:
		return nil
	}
	return n.enqueueRecord(ctx, tx, q, task{TaskID: taskID(msg.Envelope.EventID), OrderID: orderID, Kind: kind, To: to}, v)
}

// enqueueRecord renders t and writes its row and its outbox message.
func (n *notifier) enqueueRecord(ctx context.Context, tx pgx.Tx, q *emaildb.Queries, t task, v view) error {
	var err error
	if t.Subject, t.Text, t.HTML, err = render(t.Kind, v); err != nil {
		return fmt.Errorf("render %s: %v: %w", t.Kind, err, consumer.ErrPermanent)
	}
	rows, err := q.InsertEmail(ctx, emaildb.InsertEmailParams{TaskID: t.TaskID, OrderID: t.OrderID, Kind: t.Kind, ToAddr: t.To, Subject: t.Subject})
	if err != nil {
		return fmt.Errorf("insert email: %w", err)
	}
	if rows == 0 {
		return nil // this event's task exists already
	}
	body, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if _, err := decodeTask(body); err != nil {
		return fmt.Errorf("%s email for order %s: %v: %w", t.Kind, t.OrderID, err, consumer.ErrPermanent)
	}
	n.log.InfoContext(ctx, "email queued", "kind", t.Kind, "task_id", t.TaskID, "order_id", t.OrderID)
	return n.outbox.WriteMessage(ctx, tx, outbox.Message{
		EventID: t.TaskID, Topic: n.exchange, Key: t.OrderID.String(), Type: taskType, Payload: body,
	})
}
