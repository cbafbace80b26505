package chaos

import (
	"fmt"
	"slices"
	"strings"

	"github.com/orderflow/orderflow/internal/loadgen"
)

// facts are what the databases say of one order.
type facts struct {
	order    orderRow
	payment  *paymentRow // nil: payments has not decided
	shipment string      // "": warehouse has no row
	award    *awardRow   // nil: loyalty has no row
	emails   []emailRow
	smtp     map[string]int // accepted messages per task id; nil: not checked
}

// verdict is how far an order is from one end its outcome allows.
type verdict struct {
	missing []string // still to come
	broken  []string // what rules this end out for good
	races   []string // races docs/design.md allows that this end took
}

func (v verdict) reached() bool { return len(v.missing) == 0 && len(v.broken) == 0 }

// expect holds one fact to an end: got is done when it is one of done,
// still to come when it is one of later, and rules the end out otherwise.
// "" stands for no row and reads "none".
func (v *verdict) expect(what, got string, done, later []string) {
	switch {
	case slices.Contains(done, got):
	case slices.Contains(later, got):
		v.missing = append(v.missing, what+" "+orNone(got))
	default:
		v.broken = append(v.broken, what+" "+orNone(got))
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (v *verdict) miss(format string, args ...any) {
	v.missing = append(v.missing, fmt.Sprintf(format, args...))
}

func (v *verdict) breaks(format string, args ...any) {
	v.broken = append(v.broken, fmt.Sprintf(format, args...))
}

// merge adds w's lines to v.
func (v verdict) merge(w verdict) verdict {
	v.missing = append(slices.Clip(v.missing), w.missing...)
	v.broken = append(slices.Clip(v.broken), w.broken...)
	return v
}

// statusText is the order's status as the rules name it, with the cancel
// reason: "cancelled (out_of_stock)".
func (f facts) statusText() string {
	if f.order.status == "cancelled" {
		return "cancelled (" + f.order.cancelReason + ")"
	}
	return f.order.status
}

// paymentText is "" (none), "captured", "failed (declined)", "refunded
// (out_of_stock)".
func (f facts) paymentText() string {
	switch {
	case f.payment == nil:
		return ""
	case f.payment.reason == "":
		return f.payment.status
	default:
		return f.payment.status + " (" + f.payment.reason + ")"
	}
}

func (f facts) captured() bool {
	return f.payment != nil && (f.payment.status == "captured" || f.payment.status == "refunded")
}

// An orderEnd is one state an order may end in. Each checks the facts
// payments, warehouse, orders and loyalty own; the emails follow from the
// facts whatever the end (emailVerdict).
type orderEnd struct {
	name  string
	judge func(facts) verdict
}

var (
	happyEnd     = orderEnd{"shipped", judgeHappy}
	cancelledEnd = orderEnd{"cancelled", judgeCancelled}
)

// endsOf are the ends each outcome allows (internal/loadgen shapes the
// orders; docs/design.md "Business rules" says where each ends).
var endsOf = map[loadgen.Outcome][]orderEnd{
	loadgen.Happy:             {happyEnd},
	loadgen.Flaky:             {happyEnd},
	loadgen.Declined:          {{"payment failed", judgeFailed("declined")}},
	loadgen.Fraud:             {{"payment failed", judgeFailed("fraud_suspected")}},
	loadgen.OutOfStock:        {{"out of stock", judgeOutOfStock}},
	loadgen.Cancelled:         {cancelledEnd},
	loadgen.CancelUnconfirmed: {cancelledEnd, happyEnd},
}

// judgeHappy: paid, picked, shipped, the points of its total awarded.
func judgeHappy(f facts) verdict {
	var v verdict
	v.expect("status", f.statusText(), []string{"shipped"}, []string{"placed", "paid"})
	v.expect("payment", f.paymentText(), []string{"captured"}, []string{""})
	v.expect("shipment", f.shipment, []string{"shipped"}, []string{"", "scheduled"})
	v.pointsAwarded(f)
	return v
}

// judgeFailed: the payment failed for reason; nothing else happened.
func judgeFailed(reason string) func(facts) verdict {
	return func(f facts) verdict {
		var v verdict
		v.expect("status", f.statusText(), []string{"payment_failed"}, []string{"placed"})
		v.expect("payment", f.paymentText(), []string{"failed (" + reason + ")"}, []string{""})
		v.expect("shipment", f.shipment, []string{""}, nil)
		v.noPoints(f)
		return v
	}
}

// judgeOutOfStock: captured, stock unavailable, refunded, cancelled.
func judgeOutOfStock(f facts) verdict {
	var v verdict
	v.expect("status", f.statusText(), []string{"cancelled (out_of_stock)"}, []string{"placed", "paid"})
	v.expect("payment", f.paymentText(), []string{"refunded (out_of_stock)"}, []string{"", "captured"})
	v.expect("shipment", f.shipment, []string{"unavailable"}, []string{""})
	v.pointsCancelled(f)
	return v
}

// The races docs/design.md allows a cancelled order, as Counts names them.
const (
	raceShipped = "shipped before the cancellation reached warehouse"
	racePoints  = "points awarded before the cancellation reached loyalty"
)

// judgeCancelled: cancelled at the customer's request, which orders
// recorded before it answered 202; refunded, or never charged when
// payments saw the cancellation first; the pick cancelled, or never made.
// Shipped anyway is docs/design.md's known race (the warehouse shipped before the
// cancellation reached it).
func judgeCancelled(f facts) verdict {
	var v verdict
	v.expect("status", f.statusText(), []string{"cancelled (customer_request)"}, nil)
	v.expect("payment", f.paymentText(), []string{"refunded (customer_request)", "failed (cancelled_before_payment)"},
		[]string{"", "captured"})
	v.expect("shipment", f.shipment, []string{"cancelled", "shipped"}, []string{"", "scheduled"})
	if f.shipment == "shipped" {
		v.races = append(v.races, raceShipped)
	}
	v.pointsCancelled(f)
	return v
}

// wantPoints is what loyalty awards for the order: one point per whole
// currency unit of its total.
func (f facts) wantPoints() int64 { return f.order.totalCents / 100 }

// pointsAwarded: the order's points awarded by loyalty and known to
// orders; an order worth none has no award.
func (v *verdict) pointsAwarded(f facts) {
	a := f.award
	switch {
	case f.wantPoints() == 0 || a == nil && !f.captured():
		v.noPoints(f)
		return
	case a == nil:
		v.miss("no award yet")
	case a.state == "pending":
		v.miss("award pending")
	case a.state == "dropped":
		v.breaks("award dropped")
	}
	v.awardSize(f)
	v.ordersPoints(f)
}

// noPoints: no award at all.
func (v *verdict) noPoints(f facts) {
	if f.award != nil {
		v.breaks("award %s (%d points)", f.award.state, f.award.points)
	}
	v.ordersPoints(f)
}

// pointsCancelled: a cancelled or refunded order gets no points, its
// award dropped or never made, unless the award was made before the
// cancellation reached loyalty (docs/design.md: awarded after the delay "unless
// the order is cancelled before then"; no clawback).
func (v *verdict) pointsCancelled(f facts) {
	a := f.award
	switch {
	case a == nil:
		if f.captured() && f.wantPoints() > 0 {
			v.miss("loyalty has not seen the capture")
		}
	case a.state == "pending":
		v.miss("award pending")
	case a.state == "awarded" && !a.cancelledAt.Valid:
		v.miss("points awarded, the cancellation not yet seen by loyalty")
	case a.state == "awarded" && a.cancelledAt.Time.Before(a.awardedAt.Time):
		v.breaks("%d points awarded after loyalty knew of the cancellation", a.points)
	case a.state == "awarded":
		v.races = append(v.races, racePoints)
	}
	v.awardSize(f)
	v.ordersPoints(f)
}

func (v *verdict) awardSize(f facts) {
	if a := f.award; a != nil && a.points != f.wantPoints() {
		v.breaks("award of %d points for a total of %d cents", a.points, f.order.totalCents)
	}
}

// ordersPoints: orders' pointsAwarded is the awarded points, once orders
// has heard of them, and 0 while there are none. (orders is read before
// loyalty, so points orders knows are in loyalty's read too.)
func (v *verdict) ordersPoints(f facts) {
	got := f.order.points
	if a := f.award; a != nil && a.state == "awarded" {
		switch got {
		case a.points:
		case 0:
			v.miss("pointsAwarded 0 in orders")
		default:
			v.breaks("pointsAwarded %d, loyalty awarded %d", got, a.points)
		}
		return
	}
	if got != 0 {
		v.breaks("pointsAwarded %d without an award", got)
	}
}

// emailKinds are the email kinds, each with the fact that makes it
// (services/email/notify.go), in the order they are written.
var emailKinds = []struct {
	kind, what string
	made       func(facts) bool
}{
	{"confirmation", "a capture", facts.captured},
	{"payment_failed", "a declined or fraud payment", func(f facts) bool {
		return f.payment != nil && f.payment.status == "failed" && f.payment.reason != "cancelled_before_payment"
	}},
	{"shipped", "a shipped shipment", func(f facts) bool { return f.shipment == "shipped" }},
	{"refunded", "a refund", func(f facts) bool { return f.payment != nil && f.payment.status == "refunded" }},
}

// emailVerdict: each email the facts make is sent (recorded sent and
// accepted by the SMTP server) and no other exists. The email tasks are
// read before the facts, so a task never shows before its fact.
func emailVerdict(f facts) verdict {
	var v verdict
	for _, k := range emailKinds {
		i := slices.IndexFunc(f.emails, func(e emailRow) bool { return e.kind == k.kind })
		made := k.made(f)
		switch {
		case i < 0 && made:
			v.miss("no %s email yet", k.kind)
		case i < 0:
		case !made:
			v.breaks("%s email without %s", k.kind, k.what)
		default:
			v.emailSent(f, f.emails[i])
		}
	}
	return v
}

func (v *verdict) emailSent(f facts, e emailRow) {
	switch {
	case e.status == "queued":
		v.miss("%s email queued", e.kind)
	case e.status == "dead":
		v.breaks("%s email dead: %s", e.kind, e.lastError)
	case f.smtp != nil && f.smtp[e.taskID] == 0:
		v.breaks("%s email %s recorded sent, never accepted by the SMTP server", e.kind, e.taskID)
	}
}

// judgeOrder finds where one order stands among the ends its outcome
// allows: reached (with the race it took, if any), still pending, or
// ruled out.
func judgeOrder(outcome loadgen.Outcome, f facts) (state, line string, races []string) {
	ends, ok := endsOf[outcome]
	if !ok {
		return "broken", fmt.Sprintf("unknown outcome %q", outcome), nil
	}
	emails := emailVerdict(f)
	verdicts := make([]verdict, len(ends))
	for i, e := range ends {
		verdicts[i] = e.judge(f).merge(emails)
		if verdicts[i].reached() {
			return "reached", "", verdicts[i].races
		}
	}
	var open, ruledOut []string
	for i, v := range verdicts {
		name := ""
		if len(ends) > 1 {
			name = ends[i].name + ": "
		}
		if len(v.broken) == 0 {
			open = append(open, name+strings.Join(v.missing, ", "))
		} else {
			ruledOut = append(ruledOut, name+strings.Join(v.broken, ", "))
		}
	}
	if len(open) > 0 {
		return "pending", "not yet: " + strings.Join(open, "; or "), nil
	}
	return "broken", strings.Join(ruledOut, "; and "), nil
}

// checkOrders holds every accepted order (ids canonical, each once) to
// its outcome's ends.
func checkOrders(r *reporter, v *dbView, accepted []Accepted) {
	complete, races, missing := 0, 0, 0
	for _, a := range accepted {
		id := a.OrderID
		o, ok := v.orders[id]
		if !ok {
			r.violation(kindMissingOrder, fmt.Sprintf("order %s (%s): answered 201, not in the orders database", id, a.Outcome))
			missing++
			continue
		}
		f := facts{order: o, shipment: v.shipments[id], emails: v.emails[id], smtp: v.smtp}
		if p, ok := v.payments[id]; ok {
			f.payment = &p
		}
		if aw, ok := v.awards[id]; ok {
			f.award = &aw
		}
		state, line, took := judgeOrder(a.Outcome, f)
		switch state {
		case "reached":
			complete++
			r.count("complete "+string(a.Outcome), 1)
			if len(took) > 0 {
				races++
			}
			for _, race := range took {
				r.count("race: "+race, 1)
			}
		case "pending":
			r.pending(kindEnd, fmt.Sprintf("order %s (%s): %s", id, a.Outcome, line))
		default:
			r.violation(kindEnd, fmt.Sprintf("order %s (%s): %s", id, a.Outcome, line))
		}
	}
	r.count("complete", complete)
	r.count("missing", missing)
	r.count("races", races)
}

// checkEmails: one email task per order and kind, one accepted message
// per task; and the figures.
func checkEmails(r *reporter, v *dbView) {
	sent, tasks := 0, 0
	for order, es := range v.emails {
		byKind := map[string]int{}
		for _, e := range es {
			tasks++
			byKind[e.kind]++
			if e.status == "sent" {
				sent++
			}
		}
		for kind, n := range byKind {
			if n > 1 {
				r.violation(kindTwice, fmt.Sprintf("order %s: %d %s email tasks", order, n, kind))
			}
		}
	}
	r.count("email tasks", tasks)
	r.count("emails sent", sent)
	if v.smtp == nil {
		return
	}
	accepted := 0
	for task, n := range v.smtp {
		accepted += n
		if n > 1 {
			r.violation(kindTwice, fmt.Sprintf("email %s accepted %d times by the SMTP server (Message-ID <%s@orderflow.local>)", task, n, task))
		}
	}
	r.count("emails accepted", accepted)
}

// checkBacklogs: every outbox drained.
func checkBacklogs(r *reporter, v *dbView) {
	var total int64
	for _, svc := range readOrder {
		if n := v.outbox[svc]; n > 0 {
			total += n
			r.pending(kindLag, fmt.Sprintf("outbox of %s: %d rows not published", svc, n))
		}
	}
	r.count("outbox pending", int(total))
}
