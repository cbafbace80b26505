package contract

import (
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// Field is a string property of the events whose value comes from outside
// the system, through an HTTP request. Every edge checks such a value with
// [Field.Check] before it reaches a database or an event, so that what a
// service accepts is what the schemas accept: the rule is read from the
// embedded schemas themselves (every property of the field's name in the
// schemas of its events), not restated beside them, and a value an edge
// accepts can never fail [Validate] later in the outbox.
//
// Check also asks what the schemas leave open but the system needs: the
// value must be text, valid UTF-8 without control characters (PostgreSQL
// refuses NUL in text, and a line break in an email header or a log line
// is an injection), and at most MaxChars characters.
type Field struct {
	name     string
	events   []string // the events whose schemas the value must pass; nil: every event with the property
	maxChars int
	want     string            // what a valid value is, the message of a failed check
	syntax   func(string) bool // a rule of the edge beyond the schemas; nil for none
}

// The fields the HTTP edges take from outside. Their length limits are
// docs/design.md's (customerId) or ours, never above a schema's maxLength.
var (
	// CustomerID is OrderPlaced's customerId, copied into the payment and
	// loyalty events; also loyalty's GET /customers/{customerId}/points.
	CustomerID = Field{name: "customerId", maxChars: 64}
	// Email is the customer's address: both the schemas' "email" format and
	// a bare RFC 5322 address that net/mail keeps as it is (what the email
	// service hands to SMTP). 254 characters is RFC 5321's path limit.
	Email = Field{name: "email", maxChars: 254, syntax: bareAddress,
		want: "must be an email address like name@example.com, at most 254 characters"}
	// SKU is an order line's sku; also warehouse's /inventory/{sku}.
	SKU = Field{name: "sku", maxChars: 64}
	// PaymentToken is the token payments charges.
	PaymentToken = Field{name: "paymentToken", maxChars: 128}
	// Currency is the ISO 4217 code of an order's amounts.
	Currency = Field{name: "currency", maxChars: 3, want: "must be an ISO 4217 code: 3 upper-case letters"}
	// CancelReason is OrderCancelled's reason, as POST /orders/{id}/cancel
	// takes it.
	CancelReason = Field{name: "reason", events: []string{"OrderCancelled"}, maxChars: 200}
)

// Name is the field's property name in the schemas, e.g. "customerId".
func (f Field) Name() string { return f.name }

// MaxChars is the most characters (Unicode code points) Check accepts.
func (f Field) MaxChars() int { return f.maxChars }

// Check returns nil when s is a valid value of the field, or an error
// whose message says what is wrong, starting "must", for a client to read
// beside the field's name. It checks, in order: that s is text
// ([CheckText]), 1 to MaxChars characters, the edge's syntax rule if any,
// then every schema property of the field. Safe for concurrent use.
func (f Field) Check(s string) error {
	if err := CheckText(s); err != nil {
		return err
	}
	want := f.want
	if want == "" {
		want = fmt.Sprintf("must be 1 to %d characters", f.maxChars)
	}
	if n := utf8.RuneCountInString(s); n < 1 || n > f.maxChars || (f.syntax != nil && !f.syntax(s)) {
		return errors.New(want)
	}
	props, err := f.properties()
	if err != nil {
		return err
	}
	for _, p := range props {
		if err := p.schema.Validate(s); err != nil {
			return fmt.Errorf("%s (%s)", want, schemaReason(err))
		}
	}
	return nil
}

// CheckText returns nil when s is text an edge may store and pass on:
// valid UTF-8 without control characters (U+0000 to U+001F, U+007F, and
// the C1 controls U+0080 to U+009F, as [unicode.IsControl] has them). JSON
// can carry every one of them escaped, and a path can carry them
// percent-encoded; the schemas do not refuse them.
func CheckText(s string) error {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !validRuneAt(s, i):
			return fmt.Errorf("must be valid UTF-8 (byte %d is not)", i)
		case unicode.IsControl(r):
			return fmt.Errorf("must not contain control characters (U+%04X at byte %d)", r, i)
		}
	}
	return nil
}

// validRuneAt reports whether the U+FFFD that ranging over s gave at byte
// i was in s (EF BF BD) rather than standing for an invalid byte.
func validRuneAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 3
}

// bareAddress reports whether s is an RFC 5322 address without a display
// name ("a@example.com", not "A <a@example.com>") that net/mail does not
// rewrite.
func bareAddress(s string) bool {
	addr, err := mail.ParseAddress(s)
	return err == nil && addr.Name == "" && addr.Address == s
}

// property is one schema property a Field's value must pass.
type property struct {
	event   string
	version int
	pointer string // the property's schema location, e.g. "/properties/items/items/properties/sku"
	schema  *jsonschema.Schema
}

// properties lists the schema properties of f, found once per field name.
func (f Field) properties() ([]property, error) {
	all, err := propertiesByName()
	if err != nil {
		return nil, err
	}
	var out []property
	for _, p := range all[f.name] {
		if f.events == nil || slices.Contains(f.events, p.event) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		// A build-time mistake in this file; its tests fail at once.
		return nil, fmt.Errorf("contract: no schema has a property %q", f.name)
	}
	return out, nil
}

// propertiesByName indexes every property of every compiled schema by its
// name, nested ones (items[].sku) included.
var propertiesByName = sync.OnceValues(func() (map[string][]property, error) {
	schemas, err := compiled()
	if err != nil {
		return nil, err
	}
	index := map[string][]property{}
	var walk func(k schemaKey, at string, s *jsonschema.Schema)
	walk = func(k schemaKey, at string, s *jsonschema.Schema) {
		if s == nil {
			return
		}
		walk(k, at, s.Ref)
		walk(k, at+"/items", s.Items2020)
		for name, p := range s.Properties {
			ptr := at + "/properties/" + escapePointer(name)
			index[name] = append(index[name], property{event: k.name, version: k.version, pointer: ptr, schema: p})
			walk(k, ptr, p)
		}
	}
	for _, f := range schemaFiles {
		walk(f.schemaKey, "", schemas[f.schemaKey])
	}
	return index, nil
})

// schemaReason is the first failed check of a schema error, without the
// value (a format error's own reason, e.g. "invalid domain: label starts
// with hyphen").
func schemaReason(err error) string {
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return err.Error()
	}
	for len(verr.Causes) > 0 {
		verr = verr.Causes[0]
	}
	if f, ok := verr.ErrorKind.(*kind.Format); ok && f.Err != nil {
		return f.Err.Error()
	}
	return verr.ErrorKind.LocalizedString(printer)
}
