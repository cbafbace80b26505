package contract

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// edgeFields are the Fields an HTTP edge checks.
var edgeFields = []Field{CustomerID, Email, SKU, PaymentToken, Currency, CancelReason}

// hostile are values every field refuses: what the issue found passing
// the HTTP checks and then failing the schema or the database.
var hostile = []string{
	"", "a\x00b", "\x00", "a\nb", "a\tb", "a\x7fb", "a\u0085b", "a\u009fb", "\xff", "a\xc3", "\xed\xa0\x80",
}

func TestFieldsFollowSchemas(t *testing.T) {
	for _, f := range edgeFields {
		props, err := f.properties()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range props {
			if p.schema.MaxLength != nil && f.MaxChars() > *p.schema.MaxLength {
				t.Errorf("%s: MaxChars %d over %s v%d %s maxLength %d", f.Name(), f.MaxChars(), p.event, p.version, p.pointer, *p.schema.MaxLength)
			}
		}
	}
	// Every event that carries a field takes part in its check, nested
	// properties included.
	var skuIn []string
	props, _ := SKU.properties()
	for _, p := range props {
		skuIn = append(skuIn, p.event+p.pointer)
	}
	if got := strings.Join(skuIn, " "); got != "OrderPlaced/properties/items/items/properties/sku PaymentCaptured/properties/items/items/properties/sku" {
		t.Errorf("sku checked against %s", got)
	}
}

func TestFieldCheck(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	refused := map[*Field][]string{
		&Email: {
			long(65) + "@example.com",              // local part over 64 bytes
			"ada@-example.com", "ada@example-.com", // a label starting or ending with a hyphen
			"ada@ex_ample.com",         // a label with an underscore
			"ada@" + long(64) + ".com", // a label over 63 characters
			"josé@example.com",         // net/mail takes it, the schema's format does not
			"ada@example.com ", "Ada <ada@example.com>", "ada", "ada@", long(250) + "@b.co",
		},
		&CustomerID:   {long(65)},
		&SKU:          {long(65)},
		&PaymentToken: {long(129)},
		&Currency:     {"eur", "EURO", "EU", "E1R", "ÉUR"},
		&CancelReason: {long(201)},
	}
	accepted := map[*Field][]string{
		&Email:        {"ada@example.com", "root@localhost", "ada+orders@example.co.uk", long(64) + "@" + long(63) + ".com"},
		&CustomerID:   {"c", strings.Repeat("é", 64), "c-42 with spaces", "\u00a0"},
		&SKU:          {"s", long(64), "A/B", "ü\ufffd"},
		&PaymentToken: {"tok_visa", long(128)},
		&Currency:     {"EUR"},
		&CancelReason: {"customer_request", strings.Repeat("ß", 200)},
	}
	for i := range edgeFields {
		f := &edgeFields[i]
		for _, s := range append(hostile, refused[f]...) {
			err := f.Check(s)
			if err == nil {
				t.Errorf("%s accepts %q", f.Name(), s)
				continue
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "must ") {
				t.Errorf("%s %q: message %q does not start with \"must \"", f.Name(), s, msg)
			}
		}
		for _, s := range accepted[f] {
			if err := f.Check(s); err != nil {
				t.Errorf("%s refuses %q: %v", f.Name(), s, err)
			}
		}
	}
	if err := Email.Check("ada@-example.com"); err == nil || !strings.Contains(err.Error(), "hyphen") {
		t.Errorf("schema reason missing: %v", err)
	}
	if err := SKU.Check("a\x00b"); err == nil || !strings.Contains(err.Error(), "U+0000 at byte 1") {
		t.Errorf("control character not named: %v", err)
	}
	if err := SKU.Check("a\xff"); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("invalid UTF-8 not named: %v", err)
	}
}

// FuzzFieldCheck asserts that a value a field accepts is text of the
// field's length and passes every schema that carries the field, checked
// the way the outbox checks it: the whole event, marshalled, through
// Validate.
func FuzzFieldCheck(f *testing.F) {
	for _, s := range append(hostile, "ada@example.com", "a@-b.co", "a@b_c.co", "EUR", "tok_visa", "a@[127.0.0.1]", `"a b"@example.com`) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, field := range edgeFields {
			if field.Check(s) != nil {
				continue
			}
			if n := utf8.RuneCountInString(s); !utf8.ValidString(s) || n < 1 || n > field.MaxChars() || strings.ContainsFunc(s, unicode.IsControl) {
				t.Fatalf("%s accepts %q", field.Name(), s)
			}
			props, err := field.properties()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range props {
				m := example(t, p.event)
				setAt(t, m, p.pointer, s)
				data, err := json.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				if err := Validate(p.event, p.version, data); err != nil {
					t.Fatalf("%s accepts %q, which fails %s: %v", field.Name(), s, p.event, err)
				}
			}
		}
	})
}

// setAt sets the instance value at a property's schema location
// (".../properties/items/items/properties/sku": the first item's sku).
func setAt(t *testing.T, m map[string]any, pointer string, v any) {
	t.Helper()
	tokens := strings.Split(strings.TrimPrefix(pointer, "/"), "/")
	var cur any = m
	for len(tokens) > 0 {
		switch tokens[0] {
		case "properties":
			obj := cur.(map[string]any)
			if len(tokens) == 2 {
				obj[tokens[1]] = v
				return
			}
			cur, tokens = obj[tokens[1]], tokens[2:]
		case "items":
			cur, tokens = cur.([]any)[0], tokens[1:]
		default:
			t.Fatalf("schema location %s: token %s", pointer, strconv.Quote(tokens[0]))
		}
	}
	t.Fatalf("schema location %s names no property", pointer)
}
