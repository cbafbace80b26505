package email

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/services/email/internal/emaildb"
)

// notifier turns events into SendEmail tasks: each task's row in emails
// and its message in the outbox are written in the transaction of the
// event's inbox row, so an event makes its email exactly once, and the
// relay publishes it to RabbitMQ.
type notifier struct {
	outbox   *outbox.Outbox
	exchange string
	log      *slog.Logger
}

// handle is the consumer.BatchHandler. The runner has locked the batch's
// orders and claimed its events in the inbox, so their rows stay as read
// until it commits. It reads the recipients of the batch's orders in one
// statement, and takes the emails waiting for the orders whose recipient
// the batch names in another; applies the messages to that state in
// memory, in slice order (several events of one order, from any topics,
// end as if handled one by one, a shipping email before its recipient
// included); then writes the emails rows, the recipients and the emails
// still waiting, a statement each, and the tasks' outbox messages: five
// statements for the batch, and one per task while outbox.WriteMessage
// has no batch form (was four to five per event).
//
// A record that cannot be decoded, names text PostgreSQL cannot store,
// renders no email or makes an invalid task fails permanently, named in a
// RecordError: the records before it commit without it, and it is
// dead-lettered. As one by one, a task that exists already is passed over,
// valid or not.
func (n *notifier) handle(ctx context.Context, tx pgx.Tx, msgs []consumer.Message) error {
	recs, fail := decodeAll(msgs)
	q := emaildb.New(tx)
	b, err := load(ctx, q, recs)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := b.apply(msgs[r.index].Context(ctx), n.log, r); err != nil {
			fail = &consumer.RecordError{Index: r.index, Err: err}
			break
		}
	}
	if fail != nil && !b.invalid {
		return fail // nothing before it can fail
	}
	// Only a task that is new is checked (it exists when its event is
	// handled again): the insert says which are.
	inserted, err := b.insertEmails(ctx, q)
	if err != nil {
		return err
	}
	var out []outbox.Message
	for _, t := range b.tasks {
		if !inserted[t.TaskID] {
			continue
		}
		if t.err != nil {
			// Its record comes before fail's: it fails first.
			return &consumer.RecordError{Index: t.index, Err: t.err}
		}
		out = append(out, outbox.Message{
			EventID: t.TaskID, Topic: n.exchange, Key: t.OrderID.String(), Type: taskType, Payload: t.body,
			CorrelationID: correlation.ID(t.ctx), Traceparent: correlation.Traceparent(t.ctx),
		})
	}
	if fail != nil {
		return fail
	}
	if err := b.write(ctx, q); err != nil {
		return err
	}
	if err := n.outbox.WriteMessage(ctx, tx, out...); err != nil {
		return err
	}
	for _, t := range b.tasks {
		if inserted[t.TaskID] {
			n.log.InfoContext(t.ctx, "email queued", "order_id", t.OrderID, "event_id", t.TaskID, "task_id", t.TaskID, "kind", t.Kind)
		}
	}
	return nil
}

// record is a message the notifier acts on, decoded.
type record struct {
	index   int // in the batch
	orderID uuid.UUID
	eventID string
	names   *emaildb.GetRecipientsRow // the recipient the event names, if any
	kind    string                    // the email it causes; "" for none
	to      string                    // its address; "" for the order's recipient's
	refund  int64                     // a refund's cents, in the recipient's currency
	v       view
}

// decodeAll decodes msgs up to the first that fails, which fail names.
func decodeAll(msgs []consumer.Message) ([]record, *consumer.RecordError) {
	recs := make([]record, 0, len(msgs))
	for i, msg := range msgs {
		r, ok, err := decoder.Decode(msg)
		if err != nil {
			return recs, &consumer.RecordError{Index: i, Err: err}
		}
		if ok {
			r.index = i
			recs = append(recs, r)
		}
	}
	return recs, nil
}

// decoder decodes each event the notifier acts on into a record, each
// named once; the consumer passes over the rest of the topics without a
// transaction (Spec.Events).
var decoder = func() *consumer.Decoder[record] {
	var d consumer.Decoder[record]
	consumer.Decodes(&d, func(ev *contract.OrderPlaced, msg consumer.Message) (record, error) {
		return newRecord(msg, &emaildb.GetRecipientsRow{CustomerID: ev.CustomerID, Email: ev.Email, Currency: ev.Currency}, nil)
	})
	consumer.Decodes(&d, func(ev *contract.PaymentCaptured, msg consumer.Message) (record, error) {
		return newRecord(msg, &emaildb.GetRecipientsRow{CustomerID: ev.CustomerID, Email: ev.Email, Currency: ev.Currency}, func(r *record) {
			r.kind, r.to, r.v.Amount = kindConfirmation, ev.Email, amount(ev.AmountCents, ev.Currency)
		})
	})
	consumer.Decodes(&d, func(ev *contract.PaymentFailed, msg consumer.Message) (record, error) {
		return newRecord(msg, &emaildb.GetRecipientsRow{CustomerID: ev.CustomerID, Email: ev.Email}, func(r *record) {
			r.kind, r.to, r.v.Reason = kindPaymentFailed, ev.Email, ev.Reason
		})
	})
	consumer.Decodes(&d, func(ev *contract.PaymentRefunded, msg consumer.Message) (record, error) {
		return newRecord(msg, &emaildb.GetRecipientsRow{CustomerID: ev.CustomerID, Email: ev.Email}, func(r *record) {
			r.kind, r.to, r.refund, r.v.Reason = kindRefunded, ev.Email, ev.AmountCents, ev.Reason
		})
	})
	consumer.Decodes(&d, func(ev *contract.OrderShipped, msg consumer.Message) (record, error) {
		return newRecord(msg, nil, func(r *record) { r.kind, r.v.TrackingID = kindShipped, ev.TrackingID })
	})
	return &d
}()

// newRecord is msg's record: the recipient it names (nil for none), and
// what set adds, the email it causes.
func newRecord(msg consumer.Message, names *emaildb.GetRecipientsRow, set func(*record)) (record, error) {
	var r record
	var err error
	if r.orderID, err = consumer.ParseOrderID(msg.Envelope.OrderID); err != nil {
		return r, err
	}
	r.eventID, r.v = msg.Envelope.EventID, view{OrderID: r.orderID.String()}
	if names != nil {
		names.OrderID = r.orderID
		// In a set-based statement a NUL (the schemas let it through)
		// would fail the whole batch, not this record.
		if strings.ContainsRune(names.CustomerID+names.Email+names.Currency, 0) {
			return r, fmt.Errorf("%s names a recipient with a NUL byte: %w", msg.Envelope.Event, consumer.ErrPermanent)
		}
		r.names = names
	}
	if set != nil {
		set(&r)
	}
	return r, nil
}

// order is one order's state across a batch.
type order struct {
	recipient      *emaildb.GetRecipientsRow // nil while unknown
	stored         bool                      // the recipient was read so
	storedCurrency string
	waiting        []emaildb.TakeWaitingForRow // the emails waiting for the recipient
	added          int                         // waiting[added:] are the batch's, not stored
}

// batch is the state of a batch's orders as its records leave it, and the
// tasks they make.
type batch struct {
	orders  map[uuid.UUID]*order
	ids     []uuid.UUID // the keys of orders, first seen first
	tasks   []pendingTask
	seen    map[uuid.UUID]bool // task ids made in the batch
	invalid bool               // some task failed its check
}

// pendingTask is a task a record made, checked but not written yet.
type pendingTask struct {
	task
	index int             // the record's in the batch
	ctx   context.Context // the record's
	body  []byte
	err   error // the check's: permanent, if the task is new
}

// load reads the recipients of the orders of recs and takes the emails
// waiting for those the batch learns the recipient of.
func load(ctx context.Context, q *emaildb.Queries, recs []record) (*batch, error) {
	b := &batch{orders: make(map[uuid.UUID]*order, len(recs)), seen: make(map[uuid.UUID]bool)}
	for _, r := range recs {
		if b.orders[r.orderID] == nil {
			b.orders[r.orderID] = &order{}
			b.ids = append(b.ids, r.orderID)
		}
	}
	if len(b.ids) == 0 {
		return b, nil
	}
	rows, err := q.GetRecipients(ctx, b.ids)
	if err != nil {
		return nil, fmt.Errorf("get recipients: %w", err)
	}
	for i := range rows {
		o := b.orders[rows[i].OrderID]
		o.recipient, o.stored, o.storedCurrency = &rows[i], true, rows[i].Currency
	}
	// The first record naming an unknown order's recipient takes its
	// waiting emails: taken now, they are queued as it is applied.
	var learn []uuid.UUID
	taken := make(map[uuid.UUID]bool)
	for _, r := range recs {
		if r.names != nil && b.orders[r.orderID].recipient == nil && !taken[r.orderID] {
			taken[r.orderID] = true
			learn = append(learn, r.orderID)
		}
	}
	if len(learn) == 0 {
		return b, nil
	}
	waiting, err := q.TakeWaitingFor(ctx, learn)
	if err != nil {
		return nil, fmt.Errorf("take waiting emails: %w", err)
	}
	for _, w := range waiting {
		o := b.orders[w.OrderID]
		o.waiting = append(o.waiting, w)
		o.added = len(o.waiting)
	}
	return b, nil
}

// apply applies r, as the handler of one record did: the recipient it
// names is remembered (the first one queues the emails that waited for
// it), then its own email queued; a shipping email waits for a recipient
// still unknown.
func (b *batch) apply(ctx context.Context, log *slog.Logger, r record) error {
	o := b.orders[r.orderID]
	if r.names != nil && o.recipient == nil {
		named := *r.names
		o.recipient = &named
		for _, w := range o.waiting {
			t := task{TaskID: taskID(w.EventID), OrderID: r.orderID, Kind: w.Kind, To: o.recipient.Email}
			if err := b.enqueue(ctx, r.index, t, view{OrderID: r.orderID.String(), TrackingID: w.TrackingID}); err != nil {
				return err
			}
		}
		o.waiting, o.added = nil, 0
	} else if r.names != nil && o.recipient.Currency == "" && r.names.Currency != "" {
		o.recipient.Currency = r.names.Currency
	}
	to := r.to
	switch r.kind {
	case "":
		return nil
	case kindShipped:
		if o.recipient == nil {
			if strings.ContainsRune(r.v.TrackingID, 0) { // see decode
				return fmt.Errorf("tracking id with a NUL byte: %w", consumer.ErrPermanent)
			}
			log.InfoContext(ctx, "shipping email waits for the order's recipient", "order_id", r.orderID)
			o.waiting = append(o.waiting, emaildb.TakeWaitingForRow{EventID: r.eventID, OrderID: r.orderID, Kind: kindShipped, TrackingID: r.v.TrackingID})
			return nil
		}
		to = o.recipient.Email
	case kindRefunded:
		r.v.Amount = amount(r.refund, o.recipient.Currency)
	}
	return b.enqueue(ctx, r.index, task{TaskID: taskID(r.eventID), OrderID: r.orderID, Kind: r.kind, To: to}, r.v)
}

// enqueue renders t and adds it to the batch's tasks, unless the batch
// made it already. Its check's failure counts only if the task is new.
func (b *batch) enqueue(ctx context.Context, index int, t task, v view) error {
	var err error
	if t.Subject, t.Text, t.HTML, err = render(t.Kind, v); err != nil {
		return fmt.Errorf("render %s: %v: %w", t.Kind, err, consumer.ErrPermanent)
	}
	if b.seen[t.TaskID] {
		return nil
	}
	b.seen[t.TaskID] = true
	body, err := json.Marshal(t)
	if err != nil {
		return err
	}
	p := pendingTask{task: t, index: index, ctx: ctx, body: body}
	if _, err := decodeTask(body); err != nil {
		p.err = fmt.Errorf("%s email for order %s: %v: %w", t.Kind, t.OrderID, err, consumer.ErrPermanent)
		b.invalid = true
	}
	b.tasks = append(b.tasks, p)
	return nil
}

// insertEmails inserts the rows of the batch's tasks and returns those
// that are new.
func (b *batch) insertEmails(ctx context.Context, q *emaildb.Queries) (map[uuid.UUID]bool, error) {
	if len(b.tasks) == 0 {
		return nil, nil
	}
	var p emaildb.InsertEmailsParams
	for _, t := range b.tasks {
		p.TaskIds = append(p.TaskIds, t.TaskID)
		p.OrderIds = append(p.OrderIds, t.OrderID)
		p.Kinds = append(p.Kinds, t.Kind)
		p.ToAddrs = append(p.ToAddrs, t.To)
		p.Subjects = append(p.Subjects, t.Subject)
	}
	ids, err := q.InsertEmails(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("insert %d emails: %w", len(p.TaskIds), err)
	}
	inserted := make(map[uuid.UUID]bool, len(ids))
	for _, id := range ids {
		inserted[id] = true
	}
	return inserted, nil
}

// write stores the recipients the batch learnt or completed and the
// emails it left waiting.
func (b *batch) write(ctx context.Context, q *emaildb.Queries) error {
	var rp emaildb.SaveRecipientsParams
	var wp emaildb.AddWaitingEmailsParams
	for _, id := range b.ids {
		o := b.orders[id]
		if r := o.recipient; r != nil && (!o.stored || r.Currency != o.storedCurrency) {
			rp.OrderIds = append(rp.OrderIds, id)
			rp.CustomerIds = append(rp.CustomerIds, r.CustomerID)
			rp.Emails = append(rp.Emails, r.Email)
			rp.Currencies = append(rp.Currencies, r.Currency)
		}
		for _, w := range o.waiting[o.added:] {
			wp.EventIds = append(wp.EventIds, w.EventID)
			wp.OrderIds = append(wp.OrderIds, id)
			wp.Kinds = append(wp.Kinds, w.Kind)
			wp.TrackingIds = append(wp.TrackingIds, w.TrackingID)
		}
	}
	if len(rp.OrderIds) > 0 {
		if err := q.SaveRecipients(ctx, rp); err != nil {
			return fmt.Errorf("save %d recipients: %w", len(rp.OrderIds), err)
		}
	}
	if len(wp.EventIds) > 0 {
		if err := q.AddWaitingEmails(ctx, wp); err != nil {
			return fmt.Errorf("add %d waiting emails: %w", len(wp.EventIds), err)
		}
	}
	return nil
}
