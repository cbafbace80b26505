// Package contract is Orderflow's event contract: the v1 event types of
// DESIGN.md, the topic each is emitted on, and the JSON Schemas every event
// is checked against before it is written to an outbox and after it is
// consumed. Released schemas never change; a breaking change is a new
// version beside v1.
package contract

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

// Validate checks data, the JSON of event name at version, against its
// schema. The error names every failing field.
func Validate(name string, version int, data []byte) error { return nil /* TODO(schemas) */ }
