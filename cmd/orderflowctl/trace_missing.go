package main

import (
	"fmt"
	"time"
)

// The expected story (README, "The choreography"): OrderPlaced; payments
// captures or fails it; a capture makes warehouse schedule a pick (or find
// no stock), loyalty schedule an award and email send a confirmation; the
// ship timer ships the pick, the award timer awards the points; a failed
// payment, a shipment and a refund each send an email; a cancellation (by
// the customer, or orders after StockUnavailable) refunds a capture,
// cancels a pick and drops the award.

// has reports whether any source holds an event of that name.
func (b *builder) has(name string) bool {
	for _, e := range b.events {
		if e.name == name {
			return true
		}
	}
	return false
}

// handledBy reports whether svc handled an event of that name.
func (b *builder) handledBy(name, svc string) bool {
	for _, in := range b.f.inbox {
		if e := b.events[in.eventID]; e != nil && e.name == name && in.service == svc {
			return true
		}
	}
	return false
}

// story names the expected steps of the order's outcome that have not
// happened (the per-event ones are named where each event is listed).
func (b *builder) story() {
	if !b.has("OrderPlaced") {
		b.missing("OrderPlaced: not in the orders outbox nor on %s (outbox rows are pruned after OUTBOX_RETENTION, 7d by default)",
			b.scanned("orders"))
	}
	captured, failed := b.has("PaymentCaptured"), b.has("PaymentFailed")
	cancelled, refunded := b.has("OrderCancelled"), b.has("PaymentRefunded")
	switch {
	case captured || failed:
	case cancelled && b.f.payment == nil && b.handledBy("OrderPlaced", "payments"):
		// cancelled before payments saw the order: nothing to charge
	default:
		b.missing("payment: no PaymentCaptured or PaymentFailed yet (payments' row: %s)", b.stateOf(b.f.payment))
	}
	var emails []string
	if failed {
		emails = append(emails, "PaymentFailed")
	}
	if captured {
		emails = append(emails, "PaymentCaptured")
		b.afterCapture(cancelled, refunded)
	}
	if b.has("OrderShipped") {
		emails = append(emails, "OrderShipped")
	}
	if refunded {
		emails = append(emails, "PaymentRefunded")
	}
	for _, ev := range emails {
		b.expectEmail(ev)
	}
}

// afterCapture: the warehouse's decision, shipping, the refund of a
// cancelled order and the points.
func (b *builder) afterCapture(cancelled, refunded bool) {
	pick, unavailable := b.has("PickScheduled"), b.has("StockUnavailable")
	shipped := b.has("OrderShipped")
	switch {
	case pick || unavailable:
	case cancelled && b.handledBy("OrderCancelled", "warehouse"):
		// cancelled before the capture reached the warehouse: no pick
	default:
		b.missing("warehouse: no PickScheduled or StockUnavailable yet (warehouse's row: %s)", b.stateOf(b.f.shipment))
	}
	if pick && !shipped && !b.has("PickCancelled") {
		if cancelled {
			b.missing("PickCancelled: the order was cancelled but the warehouse has not cancelled its pick yet")
		} else {
			b.missing("OrderShipped: not shipped yet; %s", b.timerState("warehouse", "ship"))
		}
	}
	if unavailable && !cancelled {
		b.missing("OrderCancelled: stock unavailable, but orders has not cancelled the order (out_of_stock) yet")
	}
	if (cancelled || unavailable) && !refunded {
		b.missing("PaymentRefunded: the order was cancelled after its capture, but payments has not refunded it yet")
	}
	points := b.f.order.totalCents / 100 // loyalty's centsPerPoint
	if points > 0 && !cancelled && !unavailable && !refunded && !b.has("PointsAwarded") {
		b.missing("PointsAwarded: %d points not awarded yet; %s", points, b.timerState("loyalty", "award"))
	}
}

// timerState says where a timer the story waits on is.
func (b *builder) timerState(svc, kind string) string {
	for _, t := range b.f.timers {
		if t.service != svc || t.kind != kind {
			continue
		}
		switch d := t.dueAt.Sub(b.now); {
		case t.state != "pending":
			return fmt.Sprintf("its %s timer was %s at %s, yet no event followed", kind, t.state, clock(*t.doneAt))
		case t.attempts > 0:
			return fmt.Sprintf("its %s timer failed %d times, retried at %s: %s", kind, t.attempts, clock(t.dueAt), oneLine(t.lastError))
		case d > 0:
			return fmt.Sprintf("its %s timer is due at %s, in %s", kind, clock(t.dueAt), dur(d))
		default:
			return fmt.Sprintf("its %s timer was due at %s, %s ago: is the %s timer worker running?", kind, clock(t.dueAt), dur(-d), svc)
		}
	}
	return fmt.Sprintf("%s has no %s timer for it (fired and cancelled timers are pruned after 7 days)", svc, kind)
}

// expectEmail checks the email the event causes was sent.
func (b *builder) expectEmail(event string) {
	kind := emailFor[event]
	for _, e := range b.f.emails {
		if e.kind != kind {
			continue
		}
		switch e.status {
		case "queued":
			b.missing("%s email: queued at %s, not sent yet (%d attempts%s)", kind, clock(e.createdAt), e.attempts, lastError(e.lastError))
		case "dead":
			b.missing("%s email: parked in email.send.dead (%s): fix the cause, then orderflowctl dlq replay email.send.dead", kind, oneLine(e.lastError))
		}
		return
	}
	for _, w := range b.f.waiting {
		if w.kind == kind {
			b.missing("%s email: waiting since %s for an event naming the recipient's address", kind, clock(w.createdAt))
			return
		}
	}
	b.missing("%s email: no task yet for %s", kind, event)
}

func lastError(s string) string {
	if s == "" {
		return ""
	}
	return ", last error: " + oneLine(s)
}

func (b *builder) stateOf(s *stateRow) string {
	if s == nil {
		return "none"
	}
	return s.status + parens(s.detail)
}

// notes say why steps may be absent although they happened.
func (b *builder) notes() {
	age := b.now.Sub(b.f.order.createdAt)
	if age > 7*24*time.Hour {
		b.t.Notes = append(b.t.Notes, fmt.Sprintf("the order was placed %s ago: outbox rows are pruned after OUTBOX_RETENTION (7d by default), inbox rows after 14 days and done timers after 7, so steps older than that may be missing here although they happened", dur(age)))
	}
	for _, s := range b.f.scans {
		if s.cut {
			b.t.Notes = append(b.t.Notes, fmt.Sprintf("%s[%d]: read %d records from offset %d and stopped; later records of the order are not shown", s.topic, s.partition, maxScan, s.from))
		}
	}
}
