package contract

import (
	"sort"
)

// Sample returns a valid event of the named type about orderID, its
// envelope's event, version, eventId and occurredAt left for the producer
// to fill, for tests and generated services' tests; nil for a name that is
// no event. Its fields pass the event's schema (TestSamplesAreValid).
func Sample(name, orderID string) Event {
	env := Envelope{OrderID: orderID}
	items := []Item{{SKU: "sku-1", Quantity: 1, UnitPriceCents: 2500}}
	switch name {
	case "OrderPlaced":
		return &OrderPlaced{Envelope: env, CustomerID: "c-1", Email: "ada@example.com", Items: items,
			TotalCents: 2500, Currency: "EUR", PaymentToken: "tok_visa"}
	case "OrderCancelled":
		return &OrderCancelled{Envelope: env, Reason: "customer_request"}
	case "PaymentCaptured":
		return &PaymentCaptured{Envelope: env, PaymentID: "01970000-0000-7000-8000-000000000001", CustomerID: "c-1",
			Email: "ada@example.com", AmountCents: 2500, Currency: "EUR", Items: items}
	case "PaymentFailed":
		return &PaymentFailed{Envelope: env, CustomerID: "c-1", Email: "ada@example.com", Reason: "declined"}
	case "PaymentRefunded":
		return &PaymentRefunded{Envelope: env, PaymentID: "01970000-0000-7000-8000-000000000001", CustomerID: "c-1",
			Email: "ada@example.com", AmountCents: 2500, Reason: "customer_request"}
	case "StockUnavailable":
		return &StockUnavailable{Envelope: env, SKUs: []string{"sku-1"}}
	case "PickScheduled":
		return &PickScheduled{Envelope: env, PickID: "01970000-0000-7000-8000-000000000002"}
	case "OrderShipped":
		return &OrderShipped{Envelope: env, PickID: "01970000-0000-7000-8000-000000000002", TrackingID: "TRK-0000000000000042"}
	case "PickCancelled":
		return &PickCancelled{Envelope: env, PickID: "01970000-0000-7000-8000-000000000002"}
	case "PointsAwarded":
		return &PointsAwarded{Envelope: env, CustomerID: "c-1", Points: 25}
	}
	return nil
}

// EventsOn returns the events emitted on topic, by name.
func EventsOn(topic string) []string {
	var names []string
	for name, t := range topics {
		if t == topic {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}
