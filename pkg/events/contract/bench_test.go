package contract

import (
	"encoding/json"
	"testing"
)

// typicalEvents are the events BenchmarkValidate measures: an OrderPlaced
// and a PaymentCaptured of 3 items, as the services marshal them.
func typicalEvents(tb testing.TB) map[string][]byte {
	tb.Helper()
	items := []Item{
		{SKU: "MUG-001", Quantity: 2, UnitPriceCents: 1250},
		{SKU: "TEE-042", Quantity: 1, UnitPriceCents: 1999},
		{SKU: "CAP-007", Quantity: 3, UnitPriceCents: 900},
	}
	out := map[string][]byte{}
	for _, e := range goEvents() {
		switch e := e.(type) {
		case *OrderPlaced:
			e.Items, e.TotalCents = items, 7199
		case *PaymentCaptured:
			e.Items, e.AmountCents = items, 7199
		default:
			continue
		}
		data, err := json.Marshal(e)
		if err != nil {
			tb.Fatal(err)
		}
		out[e.Name()] = data
	}
	return out
}

// BenchmarkValidate measures Validate on typical events, and
// validateReference (santhosh-tekuri/jsonschema, what Validate cost
// before the fast path) on the same bytes:
//
//	go test -run '^$' -bench Validate -benchtime 20000x ./pkg/events/contract/
func BenchmarkValidate(b *testing.B) {
	events := typicalEvents(b)
	for _, name := range []string{"OrderPlaced", "PaymentCaptured"} {
		data := events[name]
		for _, v := range []struct {
			name     string
			validate func() error
		}{
			{"fast", func() error { return Validate(name, 1, data) }},
			{"reference", func() error { return validateReference(schemaKey{name, 1}, data) }},
		} {
			b.Run(name+"/"+v.name, func(b *testing.B) {
				if err := v.validate(); err != nil { // compile outside the timer
					b.Fatal(err)
				}
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					if err := v.validate(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
