package contract

// Item is one order line.
type Item struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unitPriceCents"`
}

// OrderPlaced: orders accepted a new order.
type OrderPlaced struct {
	Envelope
	CustomerID   string `json:"customerId"`
	Email        string `json:"email"`
	Items        []Item `json:"items"`
	TotalCents   int64  `json:"totalCents"`
	Currency     string `json:"currency"`
	PaymentToken string `json:"paymentToken"`
}

// OrderCancelled: the order was cancelled, by its customer or because stock
// ran out.
type OrderCancelled struct {
	Envelope
	Reason string `json:"reason"`
}

// PaymentCaptured: payments charged the order's total.
type PaymentCaptured struct {
	Envelope
	PaymentID   string `json:"paymentId"`
	CustomerID  string `json:"customerId"`
	Email       string `json:"email"`
	AmountCents int64  `json:"amountCents"`
	Currency    string `json:"currency"`
	Items       []Item `json:"items"`
}

// PaymentFailed: the charge was declined or refused as fraud.
type PaymentFailed struct {
	Envelope
	CustomerID string `json:"customerId"`
	Email      string `json:"email"`
	Reason     string `json:"reason"` // declined | fraud_suspected
}

// PaymentRefunded: a captured payment was refunded.
type PaymentRefunded struct {
	Envelope
	PaymentID   string `json:"paymentId"`
	CustomerID  string `json:"customerId"`
	Email       string `json:"email"`
	AmountCents int64  `json:"amountCents"`
	Reason      string `json:"reason"`
}

// StockUnavailable: the warehouse could not reserve every item.
type StockUnavailable struct {
	Envelope
	SKUs []string `json:"skus"`
}

// PickScheduled: stock is reserved and a pick will ship.
type PickScheduled struct {
	Envelope
	PickID string `json:"pickId"`
}

// OrderShipped: the pick left the warehouse.
type OrderShipped struct {
	Envelope
	PickID     string `json:"pickId"`
	TrackingID string `json:"trackingId"`
}

// PickCancelled: a scheduled pick was cancelled before shipping.
type PickCancelled struct {
	Envelope
	PickID string `json:"pickId"`
}

// PointsAwarded: loyalty credited points for a paid, uncancelled order.
type PointsAwarded struct {
	Envelope
	CustomerID string `json:"customerId"`
	Points     int64  `json:"points"`
}

func (*OrderPlaced) Name() string      { return "OrderPlaced" }
func (*OrderCancelled) Name() string   { return "OrderCancelled" }
func (*PaymentCaptured) Name() string  { return "PaymentCaptured" }
func (*PaymentFailed) Name() string    { return "PaymentFailed" }
func (*PaymentRefunded) Name() string  { return "PaymentRefunded" }
func (*StockUnavailable) Name() string { return "StockUnavailable" }
func (*PickScheduled) Name() string    { return "PickScheduled" }
func (*OrderShipped) Name() string     { return "OrderShipped" }
func (*PickCancelled) Name() string    { return "PickCancelled" }
func (*PointsAwarded) Name() string    { return "PointsAwarded" }

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
