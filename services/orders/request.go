package orders

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/httpserver"
)

// Limits of POST /orders, from docs/design.md "Business rules". The string
// fields' rules (lengths, email, currency, text without control
// characters) are the contract's Fields, the one place that knows what the
// event schemas accept.
const (
	maxBodyBytes       = 64 << 10
	minItems, maxItems = 1, 100
	minQuantity        = 1
	maxQuantity        = 1000
	minUnitPriceCents  = 1
	maxUnitPriceCents  = 10_000_000
	maxIdempotencyKey  = 255

	// POST /orders/{id}/cancel: 4 KiB holds any reason of 200 characters,
	// even with every one \u-escaped.
	maxCancelBodyBytes = 4 << 10
)

// maxCancelReasonChars is the longest reason a cancel takes.
var maxCancelReasonChars = contract.CancelReason.MaxChars()

// orderRequest is a decoded, valid POST /orders body. Its JSON encoding is
// canonical (fixed field order, no insignificant whitespace), which is what
// the Idempotency-Key hash is taken of.
type orderRequest struct {
	CustomerID   string      `json:"customerId"`
	Email        string      `json:"email"`
	Items        []orderItem `json:"items"`
	Currency     string      `json:"currency"`
	PaymentToken string      `json:"paymentToken"`
}

// orderItem is one order line.
type orderItem struct {
	SKU            string `json:"sku"`
	Quantity       int64  `json:"quantity"`
	UnitPriceCents int64  `json:"unitPriceCents"`
}

// totalCents cannot overflow: at most 100 × 1000 × 10,000,000 = 10^12.
func (r orderRequest) totalCents() int64 {
	var total int64
	for _, it := range r.Items {
		total += it.Quantity * it.UnitPriceCents
	}
	return total
}

// hash identifies the request for Idempotency-Key: two bodies that decode to
// the same order (whatever their whitespace or key order) hash the same.
func (r orderRequest) hash() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // strings and integers only: cannot fail
	}
	h := sha256.New()
	h.Write([]byte("orders.v1\n"))
	h.Write(b)
	return h.Sum(nil)
}

var (
	orderFields  = []string{"customerId", "email", "items", "currency", "paymentToken"}
	itemFields   = []string{"sku", "quantity", "unitPriceCents"}
	cancelFields = []string{"reason"}
)

// decodeOrderRequest parses and validates a POST /orders body. It is pure, so
// it can be fuzzed. The error, a 400 *httpserver.InputError, is for a body
// that is not Unicode text or not one JSON object; the field errors list
// every field that breaks a rule (HTTP 422), in document order. The request
// is only meaningful when both are empty.
func decodeOrderRequest(body []byte) (orderRequest, []httpserver.FieldError, error) {
	var req orderRequest
	// Fields are decoded one by one, so that a field of the wrong type is
	// reported with its name beside the others.
	top, err := httpserver.DecodeObject(body)
	if err != nil {
		return req, nil, err
	}
	errs := httpserver.UnknownFields(top, orderFields, "")
	bad := func(field, msg string) { errs = append(errs, httpserver.FieldError{Field: field, Message: msg}) }

	req.CustomerID = decodeField(top, "customerId", contract.CustomerID, bad)
	req.Email = decodeField(top, "email", contract.Email, bad)

	var rawItems []json.RawMessage
	if err := json.Unmarshal(orNull(top["items"]), &rawItems); err != nil {
		bad("items", "must be an array")
	} else if len(rawItems) < minItems || len(rawItems) > maxItems {
		bad("items", fmt.Sprintf("must hold %d to %d items", minItems, maxItems))
	}
	for i, raw := range rawItems {
		req.Items = append(req.Items, decodeItem(raw, "items["+strconv.Itoa(i)+"]", bad))
	}

	req.Currency = decodeField(top, "currency", contract.Currency, bad)
	req.PaymentToken = decodeField(top, "paymentToken", contract.PaymentToken, bad)
	return req, errs, nil
}

// decodeCancelRequest parses the optional POST /orders/{id}/cancel body
// {"reason": "..."} into the cancel reason: an empty body, {} or a null
// reason mean customer_request. The error and the field errors are as
// decodeOrderRequest's (HTTP 400 and 422).
func decodeCancelRequest(body []byte) (string, []httpserver.FieldError, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return reasonCustomerRequest, nil, nil
	}
	top, err := httpserver.DecodeObject(body)
	if err != nil {
		return "", nil, err
	}
	errs := httpserver.UnknownFields(top, cancelFields, "")
	bad := func(field, msg string) { errs = append(errs, httpserver.FieldError{Field: field, Message: msg}) }
	reason := reasonCustomerRequest
	if raw := top["reason"]; raw != nil && string(raw) != "null" {
		reason = decodeField(top, "reason", contract.CancelReason, bad)
	}
	return reason, errs, nil
}

// decodeItem decodes items[i]; field errors go to bad, named under path.
func decodeItem(raw json.RawMessage, path string, bad func(field, msg string)) orderItem {
	var it orderItem
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		bad(path, "must be an object")
		return it
	}
	for _, fe := range httpserver.UnknownFields(m, itemFields, path+".") {
		bad(fe.Field, fe.Message)
	}
	it.SKU = decodeField(m, "sku", contract.SKU, func(field, msg string) { bad(path+"."+field, msg) })
	var ok bool
	if it.Quantity, ok = decodeInt(m["quantity"]); !ok || it.Quantity < minQuantity || it.Quantity > maxQuantity {
		bad(path+".quantity", fmt.Sprintf("must be an integer from %d to %d", minQuantity, maxQuantity))
	}
	if it.UnitPriceCents, ok = decodeInt(m["unitPriceCents"]); !ok || it.UnitPriceCents < minUnitPriceCents || it.UnitPriceCents > maxUnitPriceCents {
		bad(path+".unitPriceCents", fmt.Sprintf("must be an integer from %d to %d", minUnitPriceCents, maxUnitPriceCents))
	}
	return it
}

// decodeField decodes the string member name of m and checks it by its
// contract rule; a failure goes to bad under name. The value is returned
// even when it fails, for the caller to drop with the request.
func decodeField(m map[string]json.RawMessage, name string, rule contract.Field, bad func(field, msg string)) string {
	s, ok := decodeString(m[name])
	if !ok {
		bad(name, "must be a string")
	} else if err := rule.Check(s); err != nil {
		bad(name, err.Error())
	}
	return s
}

// decodeString decodes a JSON string; a missing or null field is "".
func decodeString(raw json.RawMessage) (string, bool) {
	var s string
	err := json.Unmarshal(orNull(raw), &s)
	return s, err == nil
}

// decodeInt decodes a JSON integer; a missing or null field is 0. Fractions
// and values beyond int64 fail.
func decodeInt(raw json.RawMessage) (int64, bool) {
	var n int64
	err := json.Unmarshal(orNull(raw), &n)
	return n, err == nil
}

func orNull(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return json.RawMessage("null")
	}
	return raw
}
