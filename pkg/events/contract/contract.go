// Package contract is Orderflow's event contract: the v1 event types of
// docs/design.md, the topic each is emitted on, and the JSON Schemas every event
// is checked against before it is written to an outbox and after it is
// consumed. Released schemas never change; a breaking change is a new
// version beside v1.
//
// It guarantees that an event which passes [Validate] has every field of its
// schema, with the documented types and bounds. It does not check facts that
// span events or databases (that a PaymentRefunded follows a PaymentCaptured,
// that totalCents adds up): those invariants are documented in each schema's
// description and are the emitting service's job. Schemas allow unknown
// fields, so a newer producer may add fields without breaking older consumers.
//
// docs/events.md, the event catalogue, is generated from the schemas.
package contract

//go:generate go run ../../../cmd/eventdoc -o ../../../docs/events.md

import "time"

// Topics, one per emitting service.
const (
	TopicOrders    = "orders"
	TopicPayments  = "payments"
	TopicWarehouse = "warehouse"
	TopicLoyalty   = "loyalty"
)

// Envelope holds the fields every event carries. Event types embed it, so
// its fields are flattened into the event's JSON.
type Envelope struct {
	Event      string    `json:"event"`
	Version    int       `json:"version"`
	EventID    string    `json:"eventId"`
	OrderID    string    `json:"orderId"`
	OccurredAt time.Time `json:"occurredAt"`
}

// Meta returns the envelope, so code handling any event can fill it in.
func (e *Envelope) Meta() *Envelope { return e }

// Event is implemented by a pointer to each event type.
type Event interface {
	// Name is the event's type name, e.g. "OrderPlaced".
	Name() string
	// Meta returns the embedded envelope.
	Meta() *Envelope
}
