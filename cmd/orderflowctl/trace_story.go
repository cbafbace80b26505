package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// trace is what `orderflowctl trace` prints: the order's steps in time
// order, then the expected steps that have not happened.
type trace struct {
	OrderID       string    `json:"orderId"`
	Status        string    `json:"status"`
	CancelReason  string    `json:"cancelReason,omitempty"`
	PlacedAt      time.Time `json:"placedAt"`
	CorrelationID string    `json:"correlationId,omitempty"`
	State         []string  `json:"state"` // each service's own row for the order
	Steps         []step    `json:"steps"`
	Missing       []string  `json:"missing"`
	Notes         []string  `json:"notes,omitempty"`
	Unavailable   []string  `json:"unavailable,omitempty"`
}

// step is one line of the timeline.
type step struct {
	At           time.Time `json:"at"`
	SincePrevMs  float64   `json:"sincePreviousMs"`
	SinceOrderMs float64   `json:"sinceOrderMs"`
	Service      string    `json:"service"`
	What         string    `json:"what"`
	Event        string    `json:"event,omitempty"`
	EventID      string    `json:"eventId,omitempty"`
	Where        string    `json:"where,omitempty"` // topic[partition]@offset
	Hop          string    `json:"hop,omitempty"`   // the delay since the step it follows from
	rank         int       // among steps at the same instant
}

// Ranks: one transaction's steps share its start time (now()), and read
// best in cause order.
const (
	rankHandled = iota
	rankFired
	rankScheduled
	rankQueued
	rankWritten
	rankPublished
	rankDone
)

// consumers lists the services that handle each event (each service's
// `handled` events, orders all of its topics'): every one of them writes
// an inbox row for it.
var consumers = map[string][]string{
	"OrderPlaced":      {"payments", "email"},
	"OrderCancelled":   {"payments", "warehouse", "loyalty"},
	"PaymentCaptured":  {"orders", "warehouse", "loyalty", "email"},
	"PaymentFailed":    {"orders", "email"},
	"PaymentRefunded":  {"orders", "loyalty", "email"},
	"StockUnavailable": {"orders", "payments"},
	"PickScheduled":    {"orders"},
	"OrderShipped":     {"orders", "email"},
	"PickCancelled":    {"orders"},
	"PointsAwarded":    {"orders"},
}

// emailFor is the email each event causes (services/email/task.go).
var emailFor = map[string]string{
	"PaymentCaptured": "confirmation", "PaymentFailed": "payment_failed",
	"OrderShipped": "shipped", "PaymentRefunded": "refunded",
}

// event is one of the order's events, from whichever sources still have it.
type event struct {
	id, name, topic string
	written         *outboxRow
	records         []kafkaRecord
}

// builder turns facts into a trace.
type builder struct {
	f        *facts
	now      time.Time
	t        *trace
	events   map[string]*event          // by eventId
	order    []string                   // eventIds in the order first seen
	handled  map[string]map[string]bool // eventId → service → its inbox has it
	reported map[string]bool            // dead letters named as missing, by where
}

func buildTrace(f *facts, now time.Time) *trace {
	b := &builder{f: f, now: now, events: map[string]*event{}, handled: map[string]map[string]bool{}, reported: map[string]bool{}, t: &trace{
		OrderID: f.orderID, Status: f.order.status, CancelReason: f.order.cancelReason,
		PlacedAt: f.order.createdAt, CorrelationID: f.order.correlationID, Unavailable: f.unavailable,
		Steps: []step{}, Missing: []string{},
	}}
	b.collectEvents()
	b.state()
	b.outboxSteps()
	b.recordSteps()
	b.inboxSteps()
	b.timerSteps()
	b.emailSteps()
	b.deadSteps()
	b.timelineOnly()
	b.story()
	b.notes()
	b.finish()
	return b.t
}

func (b *builder) event(id string) *event {
	e, ok := b.events[id]
	if !ok {
		e = &event{id: id}
		b.events[id] = e
		b.order = append(b.order, id)
	}
	return e
}

// collectEvents joins the outbox rows, records and orders' timeline by
// eventId.
func (b *builder) collectEvents() {
	for i, o := range b.f.outbox {
		if slices.Contains(eventTopics, o.topic) {
			e := b.event(o.eventID)
			e.name, e.topic, e.written = o.eventType, o.topic, &b.f.outbox[i]
		}
	}
	for _, r := range b.f.records {
		e := b.event(r.eventID)
		e.name, e.topic = cmp.Or(e.name, r.event, "(not an event)"), r.topic
		e.records = append(e.records, r)
	}
	for _, t := range b.f.timeline {
		e := b.event(t.eventID)
		e.name = cmp.Or(e.name, t.event)
		if e.topic == "" {
			e.topic = t.service // each service emits on the topic of its name
		}
	}
}

func (b *builder) add(s step) { b.t.Steps = append(b.t.Steps, s) }

func (b *builder) missing(format string, args ...any) {
	b.t.Missing = append(b.t.Missing, fmt.Sprintf(format, args...))
}

// state lists each service's own row for the order.
func (b *builder) state() {
	s := []string{"orders " + b.f.order.status + parens(b.f.order.cancelReason)}
	for _, r := range []struct {
		name string
		row  *stateRow
	}{{"payments", b.f.payment}, {"warehouse", b.f.shipment}, {"loyalty", b.f.award}} {
		switch {
		case r.row == nil:
			s = append(s, r.name+" none")
		case r.row.due != nil && r.row.status == "pending":
			s = append(s, fmt.Sprintf("%s %s%s due %s", r.name, r.row.status, parens(r.row.detail), clock(*r.row.due)))
		default:
			s = append(s, r.name+" "+r.row.status+parens(r.row.detail))
		}
	}
	counts := map[string]int{}
	for _, e := range b.f.emails {
		counts[e.status]++
	}
	email := "email none"
	if len(b.f.emails) > 0 {
		email = fmt.Sprintf("email %d sent, %d queued, %d dead", counts["sent"], counts["queued"], counts["dead"])
	}
	b.t.State = append(s, email)
}

func parens(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// outboxSteps: every event written, and whether its relay published it.
func (b *builder) outboxSteps() {
	for _, id := range b.order {
		e := b.events[id]
		if e.written == nil {
			continue
		}
		o := e.written
		b.add(step{At: o.createdAt, Service: o.service, What: o.service + " outbox " + o.eventType + " written",
			Event: o.eventType, EventID: o.eventID, rank: rankWritten})
		if !o.published {
			b.missing("%s: written to the %s outbox at %s, not published yet: is the %s relay running? (orderflowctl lag shows its backlog)",
				o.eventType, o.service, clock(o.createdAt), o.service)
		}
	}
}

// recordSteps: each record of the order on the event topics.
func (b *builder) recordSteps() {
	for _, id := range b.order {
		e := b.events[id]
		for _, r := range e.records {
			s := step{At: r.at, Service: r.topic, What: fmt.Sprintf("%s published %s", e.name, where(r)),
				Event: e.name, EventID: id, Where: where(r), rank: rankPublished}
			if e.written != nil {
				s.Hop = after(r.at.Sub(e.written.createdAt), "written")
			}
			b.add(s)
		}
		if e.written != nil && e.written.published && len(e.records) == 0 && b.f.kafkaRead {
			b.missing("%s: the %s relay published it, but no record of it is on %s since %s (topic retention, or another broker?)",
				e.name, e.written.service, b.scanned(e.topic), clock(b.f.order.createdAt.Add(-time.Minute)))
		}
	}
}

func where(r kafkaRecord) string { return fmt.Sprintf("%s[%d]@%d", r.topic, r.partition, r.offset) }

// scanned names the partition read of topic.
func (b *builder) scanned(topic string) string {
	for _, s := range b.f.scans {
		if s.topic == topic {
			return fmt.Sprintf("%s[%d] (offsets %d to %d)", topic, s.partition, s.from, s.to)
		}
	}
	return topic
}

// inboxSteps: each consumer's handling of each event, and the handlings
// expected that have not happened.
func (b *builder) inboxSteps() {
	handled := b.handled
	for _, in := range b.f.inbox {
		e := b.events[in.eventID]
		if e == nil || e.name == "" {
			continue // an email task's id, or an event of another order
		}
		if handled[in.eventID] == nil {
			handled[in.eventID] = map[string]bool{}
		}
		handled[in.eventID][in.service] = true
		at := fmt.Sprintf("%s[%d]@%d", in.topic, in.partition, in.offset)
		s := step{At: in.at, Service: in.service, What: fmt.Sprintf("%s handled %s from %s", in.service, e.name, at),
			Event: e.name, EventID: in.eventID, Where: at, rank: rankHandled}
		for _, r := range e.records {
			if r.topic == in.topic && r.partition == in.partition && r.offset == in.offset {
				s.Hop = after(in.at.Sub(r.at), "published")
			}
		}
		b.add(s)
	}
	for _, id := range b.order {
		e := b.events[id]
		unread := e.written != nil && e.written.published && !b.f.kafkaRead
		if len(e.records) == 0 && !unread {
			continue // not published, or its record is gone: said above
		}
		for _, svc := range consumers[e.name] {
			if handled[id][svc] {
				continue
			}
			if len(e.records) == 0 {
				b.missing("%s has not handled %s (its record was not read: Kafka did not answer)", svc, e.name)
				continue
			}
			if d, ok := b.deadLetter(svc, id); ok {
				b.reported[where(d)] = true
				b.missing("%s has not handled %s (%s): dead-lettered to %s; %s", svc, e.name, where(e.records[0]), where(d), replayHint(d))
				continue
			}
			b.missing("%s has not handled %s (%s): %s", svc, e.name, where(e.records[0]), b.groupAt(svc, e.records[0]))
		}
	}
}

// deadLetter finds svc's dead letter of the event.
func (b *builder) deadLetter(svc, eventID string) (kafkaRecord, bool) {
	for _, d := range b.f.dead {
		if d.topic == "dlq."+svc && d.eventID == eventID {
			return d, true
		}
	}
	return kafkaRecord{}, false
}

func replayHint(d kafkaRecord) string {
	return fmt.Sprintf("a person must look (orderflowctl dlq show %s %d:%d), then orderflowctl dlq replay %s", d.topic, d.partition, d.offset, d.topic)
}

// groupAt says where svc's consumer group is relative to r.
func (b *builder) groupAt(svc string, r kafkaRecord) string {
	at, ok := b.f.committed[svc][r.topic]
	switch {
	case !ok:
		return fmt.Sprintf("group orderflow-%s has committed nothing on %s[%d]: is %s running?", svc, r.topic, r.partition, svc)
	case at <= r.offset:
		return fmt.Sprintf("group orderflow-%s is at offset %d, %d records before it: %s lags or is stopped (orderflowctl lag)",
			svc, at, r.offset-at+1, svc)
	default:
		return fmt.Sprintf("group orderflow-%s is past it (offset %d): dead-lettered (see dlq.%s), or its inbox row was pruned", svc, at, svc)
	}
}

// timerSteps: timers scheduled, fired or cancelled.
func (b *builder) timerSteps() {
	for _, t := range b.f.timers {
		b.add(step{At: t.createdAt, Service: t.service, rank: rankScheduled,
			What: fmt.Sprintf("timer %s scheduled, due %s (%s later)", t.kind, clock(t.dueAt), dur(t.dueAt.Sub(t.createdAt)))})
		if t.doneAt == nil {
			continue
		}
		s := step{At: *t.doneAt, Service: t.service, What: "timer " + t.kind + " " + t.state, rank: rankFired}
		if t.state == "fired" {
			s.Hop = after(t.doneAt.Sub(t.dueAt), "due")
			if t.attempts > 0 {
				s.What += fmt.Sprintf(" after %d failed attempts", t.attempts)
			}
		}
		b.add(s)
	}
}

// emailSteps: email tasks queued, sent or parked, and emails waiting for
// their recipient's address.
func (b *builder) emailSteps() {
	published := map[string]bool{}
	for _, o := range b.f.outbox {
		if o.service == "email" {
			published[o.eventID] = o.published // the task's id
		}
	}
	for _, e := range b.f.emails {
		what := fmt.Sprintf("email task %s queued to %s", e.kind, e.to)
		if p, ok := published[e.taskID]; ok && p {
			what += ", published to RabbitMQ"
		}
		b.add(step{At: e.createdAt, Service: "email", What: what, EventID: e.taskID, rank: rankQueued})
		switch {
		case e.status == "sent" && e.sentAt != nil:
			b.add(step{At: *e.sentAt, Service: "email", What: "email " + e.kind + " sent" + attempts(e.attempts),
				EventID: e.taskID, Hop: after(e.sentAt.Sub(e.createdAt), "queued"), rank: rankDone})
		case e.status == "dead":
			b.add(step{At: e.updatedAt, Service: "email", EventID: e.taskID, rank: rankDone,
				What: fmt.Sprintf("email %s parked in email.send.dead after %d attempts: %s", e.kind, e.attempts, oneLine(e.lastError)),
				Hop:  after(e.updatedAt.Sub(e.createdAt), "queued")})
		}
		if p, ok := published[e.taskID]; ok && !p && e.status == "queued" {
			b.missing("email %s: queued at %s, not yet published to RabbitMQ: is the email relay running? (orderflowctl lag)", e.kind, clock(e.createdAt))
		}
	}
	for _, w := range b.f.waiting {
		b.add(step{At: w.createdAt, Service: "email", What: "email " + w.kind + " waiting for the recipient's address", rank: rankQueued})
	}
}

func attempts(n int) string {
	if n <= 1 {
		return ""
	}
	return fmt.Sprintf(" on attempt %d", n)
}

// deadSteps: the order's dead letters.
func (b *builder) deadSteps() {
	for _, d := range b.f.dead {
		svc := strings.TrimPrefix(d.topic, "dlq.")
		tries := "after " + d.dlqAttempt + " attempts"
		if d.dlqAttempt == "0" || d.dlqAttempt == "1" {
			tries = "at once" // poison, or an error that retrying cannot fix
		}
		b.add(step{At: d.at, Service: svc, Event: d.event, EventID: d.eventID, Where: where(d), rank: rankDone, Hop: "at the original's time",
			What: fmt.Sprintf("%s dead-lettered %s from %s %s to %s: %s", svc, d.event, d.dlqOrigin, tries, where(d), short(d.dlqError, 80))})
		if !b.handled[d.eventID][svc] && !b.reported[where(d)] { // handled: replayed since
			b.missing("%s dead-lettered %s: %s", svc, d.event, replayHint(d))
		}
	}
}

// timelineOnly shows events that orders recorded but whose outbox row and
// record are both gone (pruned, or read past).
func (b *builder) timelineOnly() {
	for _, t := range b.f.timeline {
		e := b.events[t.eventID]
		if e.written == nil && len(e.records) == 0 {
			b.add(step{At: t.recordedAt, Service: "orders", Event: t.event, EventID: t.eventID, rank: rankHandled,
				What: fmt.Sprintf("orders recorded %s of %s (its outbox row and record are gone)", t.event, t.service)})
		}
	}
}

func oneLine(s string) string { return short(s, 160) }

// short is s on one line, cut after n bytes.
func short(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}

// finish sorts the steps and sets their delays.
func (b *builder) finish() {
	slices.SortStableFunc(b.t.Steps, func(x, y step) int {
		return cmp.Or(x.At.Compare(y.At), cmp.Compare(x.rank, y.rank))
	})
	for i := range b.t.Steps {
		s := &b.t.Steps[i]
		s.SinceOrderMs = ms(s.At.Sub(b.f.order.createdAt))
		if i > 0 {
			s.SincePrevMs = ms(s.At.Sub(b.t.Steps[i-1].At))
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func after(d time.Duration, what string) string { return dur(d) + " after " + what }

// dur is a delay for people: milliseconds under a minute, seconds above.
func dur(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + dur(-d)
	case d < time.Millisecond:
		return "<1ms"
	case d < time.Minute:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// clock is a time as the timeline prints it.
func clock(t time.Time) string { return t.UTC().Format("15:04:05.000") }
