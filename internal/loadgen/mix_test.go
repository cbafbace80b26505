package loadgen

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseMix(t *testing.T) {
	for in, want := range map[string]Mix{
		"happy=80,declined=5,flaky=5,fraud=3,out-of-stock=2,cancelled=5": DefaultMix(),
		"happy=1":                        {Happy: 1},
		" happy=1 , cancelled=0 ":        {Happy: 1, Cancelled: 0},
		"fraud=2,out-of-stock=7":         {Fraud: 2, OutOfStock: 7},
		DefaultMix().String():            DefaultMix(),
		Mix{Happy: 3, Flaky: 1}.String(): {Happy: 3, Flaky: 1},
	} {
		got, err := ParseMix(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseMix(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":                   "not outcome=weight",
		"happy":              "not outcome=weight",
		"happy=x":            "not a whole number",
		"happy=-1":           "negative",
		"happy=0":            "every weight is 0",
		"happy=1,happy=2":    "given twice",
		"shipped=1":          `unknown outcome "shipped"`,
		"happy=1,cancel=1":   "want happy, declined, flaky, fraud, out-of-stock, cancelled",
		"happy=1,,declined=": "not outcome=weight",
	} {
		if _, err := ParseMix(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMix(%q) = %v; want an error containing %q", in, err, want)
		}
	}
}

// The same seed plans the same orders; the draws follow the weights; each
// outcome's order is shaped for it.
func TestPlanner(t *testing.T) {
	const limit = 5_000 // low, so that fraud orders need several units
	plan := func(seed uint64) []order {
		p := newPlanner(seed, DefaultMix(), "run1", limit)
		var orders []order
		for n := range 10_000 {
			orders = append(orders, p.next(n))
		}
		return orders
	}
	a, b, c := plan(7), plan(7), plan(8)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("seed 7 planned two different schedules")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("seeds 7 and 8 planned the same schedule")
	}

	counts := map[Outcome]int{}
	perSKU := map[string]int64{}
	for _, o := range a {
		counts[o.outcome]++
		var body orderBody
		if err := json.Unmarshal(o.body, &body); err != nil {
			t.Fatal(err)
		}
		it := body.Items[0]
		total := it.Quantity * it.UnitPriceCents
		wantToken := map[Outcome]string{Declined: "tok_declined", Flaky: "tok_flaky"}[o.outcome]
		if wantToken == "" {
			wantToken = "tok_visa"
		}
		if body.PaymentToken != wantToken || len(body.Items) != 1 || it.Quantity < 1 || it.Quantity > maxQuantity ||
			it.UnitPriceCents < 1 || it.UnitPriceCents > maxUnitPriceCents || (total > limit) != (o.outcome == Fraud) ||
			(it.SKU == "load-run1-oos") != (o.outcome == OutOfStock) {
			t.Fatalf("order %d, %s: %s", o.n, o.outcome, o.body)
		}
		if o.outcome != OutOfStock {
			perSKU[it.SKU] += it.Quantity
		}
	}
	for o, w := range DefaultMix() {
		if share := float64(counts[o]) / float64(len(a)) * 100; share < float64(w)-1.5 || share > float64(w)+1.5 {
			t.Errorf("%s: %.1f%% of the orders, weight %d%%", o, share, w)
		}
	}
	for sku, units := range perSKU {
		if units > 2*skuOrders {
			t.Errorf("%s: %d units ordered, over %d", sku, units, 2*skuOrders)
		}
	}
	if len(perSKU) < skuWidth {
		t.Errorf("%d SKUs in use", len(perSKU))
	}
}
