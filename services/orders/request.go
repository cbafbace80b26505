package orders

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/orderflow/orderflow/pkg/httpserver"
)

// Limits of POST /orders, from DESIGN "Business rules" (sku and payment
// token lengths are ours).
const (
	maxBodyBytes         = 64 << 10
	minItems, maxItems   = 1, 100
	minQuantity          = 1
	maxQuantity          = 1000
	minUnitPriceCents    = 1
	maxUnitPriceCents    = 10_000_000
	maxCustomerIDChars   = 64
	maxSKUChars          = 64
	maxEmailChars        = 254 // RFC 5321 path limit
	maxPaymentTokenChars = 128
	maxIdempotencyKey    = 255

	// POST /orders/{id}/cancel: 4 KiB holds any reason of 200 characters,
	// even with every one \u-escaped.
	maxCancelBodyBytes   = 4 << 10
	maxCancelReasonChars = 200
)

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
// it can be fuzzed. The error is for a body that is not one JSON object of
// known fields (HTTP 400); the field errors list every field that breaks a
// rule (HTTP 422), in document order. The request is only meaningful when
// both are empty.
func decodeOrderRequest(body []byte) (orderRequest, []httpserver.FieldError, error) {
	var req orderRequest
	// json.Unmarshal checks the whole input first, so trailing data is a
	// syntax error too. Fields are decoded one by one below, so that a field
	// of the wrong type is reported with its name beside the others.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return req, nil, malformed(err, "the body must be a JSON object")
	}
	if top == nil {
		return req, nil, errors.New("the body must be a JSON object, not null")
	}
	var errs []httpserver.FieldError
	bad := func(field, msg string) { errs = append(errs, httpserver.FieldError{Field: field, Message: msg}) }
	unknownFields(top, orderFields, "", bad)

	var ok bool
	if req.CustomerID, ok = decodeString(top["customerId"]); !ok {
		bad("customerId", "must be a string")
	} else if n := utf8.RuneCountInString(req.CustomerID); n < 1 || n > maxCustomerIDChars {
		bad("customerId", fmt.Sprintf("must be 1 to %d characters", maxCustomerIDChars))
	}

	if req.Email, ok = decodeString(top["email"]); !ok {
		bad("email", "must be a string")
	} else if !validEmail(req.Email) {
		bad("email", "must be an email address like name@example.com")
	}

	var rawItems []json.RawMessage
	if err := json.Unmarshal(orNull(top["items"]), &rawItems); err != nil {
		bad("items", "must be an array")
	} else if len(rawItems) < minItems || len(rawItems) > maxItems {
		bad("items", fmt.Sprintf("must hold %d to %d items", minItems, maxItems))
	}
	for i, raw := range rawItems {
		req.Items = append(req.Items, decodeItem(raw, "items["+strconv.Itoa(i)+"]", bad))
	}

	if req.Currency, ok = decodeString(top["currency"]); !ok {
		bad("currency", "must be a string")
	} else if !validCurrency(req.Currency) {
		bad("currency", "must be an ISO 4217 code: 3 upper-case letters")
	}

	if req.PaymentToken, ok = decodeString(top["paymentToken"]); !ok {
		bad("paymentToken", "must be a string")
	} else if n := utf8.RuneCountInString(req.PaymentToken); n < 1 || n > maxPaymentTokenChars {
		bad("paymentToken", fmt.Sprintf("must be 1 to %d characters", maxPaymentTokenChars))
	}

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
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return "", nil, malformed(err, "the body must be a JSON object")
	}
	if top == nil {
		return "", nil, errors.New("the body must be a JSON object, not null")
	}
	var errs []httpserver.FieldError
	bad := func(field, msg string) { errs = append(errs, httpserver.FieldError{Field: field, Message: msg}) }
	unknownFields(top, cancelFields, "", bad)

	reason := reasonCustomerRequest
	if raw := top["reason"]; raw != nil && string(raw) != "null" {
		s, ok := decodeString(raw)
		if !ok {
			bad("reason", "must be a string")
		} else if n := utf8.RuneCountInString(s); n < 1 || n > maxCancelReasonChars {
			bad("reason", fmt.Sprintf("must be 1 to %d characters, or left out for %s", maxCancelReasonChars, reasonCustomerRequest))
		} else {
			reason = s
		}
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
	unknownFields(m, itemFields, path+".", bad)
	var ok bool
	if it.SKU, ok = decodeString(m["sku"]); !ok {
		bad(path+".sku", "must be a string")
	} else if n := utf8.RuneCountInString(it.SKU); n < 1 || n > maxSKUChars {
		bad(path+".sku", fmt.Sprintf("must be 1 to %d characters", maxSKUChars))
	}
	if it.Quantity, ok = decodeInt(m["quantity"]); !ok || it.Quantity < minQuantity || it.Quantity > maxQuantity {
		bad(path+".quantity", fmt.Sprintf("must be an integer from %d to %d", minQuantity, maxQuantity))
	}
	if it.UnitPriceCents, ok = decodeInt(m["unitPriceCents"]); !ok || it.UnitPriceCents < minUnitPriceCents || it.UnitPriceCents > maxUnitPriceCents {
		bad(path+".unitPriceCents", fmt.Sprintf("must be an integer from %d to %d", minUnitPriceCents, maxUnitPriceCents))
	}
	return it
}

// unknownFields reports each key not in known, in sorted order. Keys match
// exactly, unlike encoding/json's case-insensitive struct matching: a
// misspelt field must not be silently ignored.
func unknownFields(m map[string]json.RawMessage, known []string, prefix string, bad func(field, msg string)) {
	var unknown []string
	for k := range m {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		bad(prefix+k, "is not a known field")
	}
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

// validEmail accepts a bare RFC 5322 address ("a@example.com"), not the
// display-name form ("A <a@example.com>") nor anything ParseAddress would
// rewrite.
func validEmail(s string) bool {
	if s == "" || len(s) > maxEmailChars {
		return false
	}
	addr, err := mail.ParseAddress(s)
	return err == nil && addr.Name == "" && addr.Address == s
}

func validCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := range len(s) {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// malformed turns a JSON error into a short client-facing reason.
func malformed(err error, typeMsg string) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, new(*json.UnmarshalTypeError)):
		return errors.New(typeMsg)
	default:
		return fmt.Errorf("malformed JSON: %v", err)
	}
}
