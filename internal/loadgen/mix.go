package loadgen

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Outcome is the end an order is shaped to reach (docs/design.md "Business
// rules").
type Outcome string

// The outcomes a Mix weighs, and the one Out gets for a cancel that failed.
const (
	Happy      Outcome = "happy"        // tok_visa: paid, shipped, points awarded
	Declined   Outcome = "declined"     // tok_declined: payment_failed, reason declined
	Flaky      Outcome = "flaky"        // tok_flaky: captured on the gateway's third try, then as happy
	Fraud      Outcome = "fraud"        // total above the fraud limit: payment_failed, reason fraud_suspected
	OutOfStock Outcome = "out-of-stock" // the run's SKU seeded with 0 units: refunded, cancelled with out_of_stock
	Cancelled  Outcome = "cancelled"    // a happy order cancelled right after its 201 (answered 202): cancelled, refunded
	// CancelUnconfirmed is what Out says of a Cancelled order whose cancel
	// was not answered 202 (a 409, a 5xx, no answer): it may end cancelled
	// or as a happy order.
	CancelUnconfirmed Outcome = "cancel-unconfirmed"
)

// Outcomes are the outcomes of a Mix, in the order Mix.String writes them.
var Outcomes = []Outcome{Happy, Declined, Flaky, Fraud, OutOfStock, Cancelled}

// Mix weighs the outcomes: each order is one of them, drawn with
// probability weight/sum. A missing outcome weighs 0.
type Mix map[Outcome]int

// DefaultMix is happy=80,declined=5,flaky=5,fraud=3,out-of-stock=2,cancelled=5.
func DefaultMix() Mix {
	return Mix{Happy: 80, Declined: 5, Flaky: 5, Fraud: 3, OutOfStock: 2, Cancelled: 5}
}

// ParseMix reads "happy=80,declined=5,...": outcomes of Outcomes with
// whole weights of at least 0, at least one above 0.
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	for part := range strings.SplitSeq(s, ",") {
		name, weight, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("mix: %q is not outcome=weight", part)
		}
		if _, dup := m[Outcome(name)]; dup {
			return nil, fmt.Errorf("mix: %s given twice", name)
		}
		w, err := strconv.Atoi(weight)
		if err != nil {
			return nil, fmt.Errorf("mix: weight of %s: %q is not a whole number", name, weight)
		}
		m[Outcome(name)] = w
	}
	return m, m.validate()
}

// String writes the mix as ParseMix reads it, leaving out zero weights.
func (m Mix) String() string {
	var parts []string
	for _, o := range Outcomes {
		if w := m[o]; w > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", o, w))
		}
	}
	return strings.Join(parts, ",")
}

func (m Mix) validate() error {
	total := 0
	for o, w := range m {
		if !isMixOutcome(o) {
			return fmt.Errorf("mix: unknown outcome %q (want %s)", o, outcomeNames())
		}
		if w < 0 {
			return fmt.Errorf("mix: weight of %s is negative", o)
		}
		total += w
	}
	if total == 0 {
		return errors.New("mix: every weight is 0")
	}
	return nil
}

func outcomeNames() string {
	names := make([]string, len(Outcomes))
	for i, o := range Outcomes {
		names[i] = string(o)
	}
	return strings.Join(names, ", ")
}

func isMixOutcome(o Outcome) bool { return slices.Contains(Outcomes, o) }

// Limits of POST /orders that shape the orders (docs/design.md "Business rules").
const (
	maxUnitPriceCents = 10_000_000
	maxQuantity       = 1000
	maxHappyUnitCents = 10_000 // happy items cost 0.01 to 100.00, two at most: far below the default fraud limit
)

// Happy-path SKUs rotate so that none is bought more than skuOrders times
// (at most 2 units each, 200 in all), well within WAREHOUSE_DEFAULT_STOCK's
// 1000, while skuWidth of them are in use at once (no single hot stock
// row).
const (
	skuWidth  = 100
	skuOrders = 100
)

// order is one request of the schedule.
type order struct {
	n       int     // its place in the schedule, from 0
	outcome Outcome // what it is shaped to end as
	body    []byte  // the POST /orders body
}

// orderBody is the body of POST /orders.
type orderBody struct {
	CustomerID   string `json:"customerId"`
	Email        string `json:"email"`
	Items        []item `json:"items"`
	Currency     string `json:"currency"`
	PaymentToken string `json:"paymentToken"`
}

type item struct {
	SKU            string `json:"sku"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unitPriceCents"`
}

// planner draws the schedule's orders from a seeded generator, so a seed
// gives the same outcomes, customers and amounts in the same order, however
// the requests fare.
type planner struct {
	rng        *rand.Rand
	mix        Mix
	total      int
	runID      string
	fraudLimit int64
	rotating   int // orders placed on the rotating SKUs so far
	skus       int // Config.SKUs
}

func newPlanner(seed uint64, mix Mix, runID string, fraudLimit int64) *planner {
	p := &planner{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), mix: mix, runID: runID, fraudLimit: fraudLimit}
	for _, w := range mix {
		p.total += w
	}
	return p
}

// outOfStockSKU is the SKU the run seeds with no stock.
func outOfStockSKU(runID string) string { return "load-" + runID + "-oos" }

// next is the order at place n.
func (p *planner) next(n int) order {
	o := order{n: n, outcome: p.draw()}
	b := orderBody{
		CustomerID:   fmt.Sprintf("load-%d", p.rng.IntN(1000)),
		Email:        "load@example.com",
		Currency:     "EUR",
		PaymentToken: "tok_visa",
	}
	happyUnit := min(maxHappyUnitCents, p.fraudLimit/2) // two of them stay within the limit
	it := item{SKU: p.rotatingSKU(), Quantity: 1 + p.rng.Int64N(2), UnitPriceCents: 1 + p.rng.Int64N(happyUnit)}
	switch o.outcome {
	case Declined:
		b.PaymentToken = "tok_declined"
	case Flaky:
		b.PaymentToken = "tok_flaky"
	case Fraud:
		it.UnitPriceCents = min(p.fraudLimit+1, maxUnitPriceCents)
		it.Quantity = (p.fraudLimit + it.UnitPriceCents) / it.UnitPriceCents // total > limit
	case OutOfStock:
		it.SKU, it.Quantity = outOfStockSKU(p.runID), 1
	}
	b.Items = []item{it}
	o.body, _ = json.Marshal(b) // strings and numbers only: cannot fail
	return o
}

func (p *planner) draw() Outcome {
	r := p.rng.IntN(p.total)
	for _, o := range Outcomes {
		if r -= p.mix[o]; r < 0 {
			return o
		}
	}
	panic("unreachable: the weights add up to total")
}

// rotatingSKU is the SKU of the next order of the rotating set: skuWidth
// in use at a time, each for skuOrders orders; or one of the fixed set when
// Config.SKUs says so.
func (p *planner) rotatingSKU() string {
	if p.skus > 0 {
		return fmt.Sprintf("load-sku-%d", p.rng.IntN(p.skus))
	}
	k := p.rotating
	p.rotating++
	return fmt.Sprintf("load-%s-%d", p.runID, k%skuWidth+skuWidth*(k/(skuWidth*skuOrders)))
}
