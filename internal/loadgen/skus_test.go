package loadgen

import (
	"encoding/json"
	"strings"
	"testing"
)

// With SKUs set, orders buy from that fixed set only (the out-of-stock
// ones keep the run's own SKU).
func TestFixedSKUs(t *testing.T) {
	p := newPlanner(7, DefaultMix(), "run1", DefaultFraudLimitCents)
	p.skus = 3
	seen := map[string]bool{}
	for n := range 500 {
		o := p.next(n)
		var b orderBody
		if err := json.Unmarshal(o.body, &b); err != nil {
			t.Fatal(err)
		}
		sku := b.Items[0].SKU
		if o.outcome == OutOfStock {
			if sku != outOfStockSKU("run1") {
				t.Fatalf("out-of-stock order buys %q", sku)
			}
			continue
		}
		if !strings.HasPrefix(sku, "load-sku-") {
			t.Fatalf("order %d buys %q, not one of the fixed SKUs", n, sku)
		}
		seen[sku] = true
	}
	if len(seen) != 3 {
		t.Errorf("SKUs used: %v, want the 3 fixed ones", seen)
	}
}
