package contract

// Item is one order line, in OrderPlaced and PaymentCaptured.
type Item struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unitPriceCents"`
}

// OrderPlaced is emitted by orders when it accepts a new order.
type OrderPlaced struct {
	Envelope
	CustomerID   string `json:"customerId"`
	Email        string `json:"email"`
	Items        []Item `json:"items"`
	TotalCents   int64  `json:"totalCents"`
	Currency     string `json:"currency"`
	PaymentToken string `json:"paymentToken"`
}

// OrderCancelled is emitted by orders when an order is cancelled, by its
// customer or because stock ran out.
type OrderCancelled struct {
	Envelope
	Reason string `json:"reason"`
}

// PaymentCaptured is emitted by payments when it charged the order's total.
type PaymentCaptured struct {
	Envelope
	PaymentID   string `json:"paymentId"`
	CustomerID  string `json:"customerId"`
	Email       string `json:"email"`
	AmountCents int64  `json:"amountCents"`
	Currency    string `json:"currency"`
	Items       []Item `json:"items"`
}

// PaymentFailed is emitted by payments when the charge was declined or
// refused as fraud.
type PaymentFailed struct {
	Envelope
	CustomerID string `json:"customerId"`
	Email      string `json:"email"`
	Reason     string `json:"reason"` // declined | fraud_suspected
}

// PaymentRefunded is emitted by payments when it refunded a captured payment.
type PaymentRefunded struct {
	Envelope
	PaymentID   string `json:"paymentId"`
	CustomerID  string `json:"customerId"`
	Email       string `json:"email"`
	AmountCents int64  `json:"amountCents"`
	Reason      string `json:"reason"`
}

// StockUnavailable is emitted by warehouse when it could not reserve every
// item.
type StockUnavailable struct {
	Envelope
	SKUs []string `json:"skus"`
}

// PickScheduled is emitted by warehouse when stock is reserved and a pick
// will ship.
type PickScheduled struct {
	Envelope
	PickID string `json:"pickId"`
}

// OrderShipped is emitted by warehouse when the pick left the warehouse.
type OrderShipped struct {
	Envelope
	PickID     string `json:"pickId"`
	TrackingID string `json:"trackingId"`
}

// PickCancelled is emitted by warehouse when a scheduled pick was cancelled
// before shipping.
type PickCancelled struct {
	Envelope
	PickID string `json:"pickId"`
}

// PointsAwarded is emitted by loyalty when it credited points for a paid,
// uncancelled order.
type PointsAwarded struct {
	Envelope
	CustomerID string `json:"customerId"`
	Points     int64  `json:"points"`
}

// Name returns "OrderPlaced". Each event type's Name is its schema's file
// name and the value of its "event" field.
func (*OrderPlaced) Name() string { return "OrderPlaced" }

// Name returns "OrderCancelled".
func (*OrderCancelled) Name() string { return "OrderCancelled" }

// Name returns "PaymentCaptured".
func (*PaymentCaptured) Name() string { return "PaymentCaptured" }

// Name returns "PaymentFailed".
func (*PaymentFailed) Name() string { return "PaymentFailed" }

// Name returns "PaymentRefunded".
func (*PaymentRefunded) Name() string { return "PaymentRefunded" }

// Name returns "StockUnavailable".
func (*StockUnavailable) Name() string { return "StockUnavailable" }

// Name returns "PickScheduled".
func (*PickScheduled) Name() string { return "PickScheduled" }

// Name returns "OrderShipped".
func (*OrderShipped) Name() string { return "OrderShipped" }

// Name returns "PickCancelled".
func (*PickCancelled) Name() string { return "PickCancelled" }

// Name returns "PointsAwarded".
func (*PointsAwarded) Name() string { return "PointsAwarded" }

// topics maps each event to the topic it is emitted on.
var topics = map[string]string{
	"OrderPlaced": TopicOrders, "OrderCancelled": TopicOrders,
	"PaymentCaptured": TopicPayments, "PaymentFailed": TopicPayments, "PaymentRefunded": TopicPayments,
	"StockUnavailable": TopicWarehouse, "PickScheduled": TopicWarehouse, "OrderShipped": TopicWarehouse, "PickCancelled": TopicWarehouse,
	"PointsAwarded": TopicLoyalty,
}

// TopicOf returns the topic event name is emitted on.
func TopicOf(name string) (string, bool) {
	t, ok := topics[name]
	return t, ok
}
