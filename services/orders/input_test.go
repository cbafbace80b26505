package orders

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/httpserver"
)

// hostileEmails pass net/mail but not the schemas' "email" format: the
// ones found getting a 500 from POST /orders, and their kin.
var hostileEmails = []string{
	strings.Repeat("a", 65) + "@example.com",  // local part over 64 bytes
	"ada@-example.com",                        // a label starting with a hyphen
	"ada@example-.com",                        // ... or ending with one
	"ada@ex_ample.com",                        // an underscore
	"ada@" + strings.Repeat("a", 64) + ".com", // a label over 63 characters
	"josé@example.com",                        // non-ASCII local part
	"ada@exämple.com",                         // non-ASCII domain
}

// controls are control characters as a JSON string carries them.
var controls = []string{`\u0000`, `\u0001`, `\n`, `\u001f`, `\u007f`, `\u0085`, `\u009f`}

// TestCreateOrderEnforcesSchema derives refused requests from the
// OrderPlaced schema itself: for every rule of every property a request
// carries, a request breaking it gets 422 naming the field and writes
// nothing. A rule the test does not know fails it, so a schema rule cannot
// go unenforced at the edge unnoticed.
func TestCreateOrderEnforcesSchema(t *testing.T) {
	t.Parallel()
	b := setup(t)
	raw, _ := contract.Schema("OrderPlaced", 1)
	var schema schemaNode
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	// Set by orders, not taken from the request.
	assigned := []string{"event", "version", "eventId", "orderId", "occurredAt", "totalCents"}
	var cases []violation
	for name, p := range schema.Properties {
		if slices.Contains(assigned, name) {
			continue
		}
		if !slices.Contains(orderFields, name) {
			t.Errorf("the schema's %s is neither a request field nor assigned by orders", name)
		}
		cases = append(cases, violations(t, name, p, slices.Contains(schema.Required, name))...)
	}
	if len(cases) < 30 {
		t.Fatalf("only %d violations derived from the schema", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			resp := b.post(t, c.body(t), nil)
			if resp.status != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422; body %s", resp.status, resp.body)
			}
			p := resp.problem(t)
			if !slices.ContainsFunc(p.Errors, func(fe httpserver.FieldError) bool { return fe.Field == c.field }) {
				t.Errorf("errors %+v do not name %s", p.Errors, c.field)
			}
			b.assertNothingWritten(t)
		})
	}
}

// schemaNode is the part of a JSON Schema the test reads; every keyword
// it has is in known below.
type schemaNode struct {
	Type       string                `json:"type"`
	Properties map[string]schemaNode `json:"properties"`
	Items      *schemaNode           `json:"items"`
	Required   []string              `json:"required"`
	MinLength  *int                  `json:"minLength"`
	MaxLength  *int                  `json:"maxLength"`
	Minimum    *int64                `json:"minimum"`
	Maximum    *int64                `json:"maximum"`
	MinItems   *int                  `json:"minItems"`
	MaxItems   *int                  `json:"maxItems"`
	Pattern    string                `json:"pattern"`
	Format     string                `json:"format"`
	Keywords   map[string]json.RawMessage
}

func (n *schemaNode) UnmarshalJSON(b []byte) error {
	type plain schemaNode
	if err := json.Unmarshal(b, (*plain)(n)); err != nil {
		return err
	}
	return json.Unmarshal(b, &n.Keywords)
}

// violation is one request breaking one schema rule.
type violation struct {
	name  string
	field string // what the 422 must name
	body  func(t *testing.T) string
}

// violations lists requests breaking each rule of property name (schema
// p): a top-level field, or an item's with name "items[0].sku".
func violations(t *testing.T, name string, p schemaNode, required bool) []violation {
	t.Helper()
	known := []string{"description", "type", "properties", "items", "required", "additionalProperties",
		"minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "pattern", "format"}
	for k := range p.Keywords {
		if !slices.Contains(known, k) {
			t.Errorf("%s: the test derives no violation of the schema keyword %q", name, k)
		}
	}
	set := func(raw string) func(t *testing.T) string {
		if item, ok := strings.CutPrefix(name, "items[0]."); ok {
			return func(t *testing.T) string { return withItemField(t, item, raw) }
		}
		return func(t *testing.T) string { return withField(t, name, raw) }
	}
	str := func(s string) string { return string(must(json.Marshal(s))) }
	var out []violation
	add := func(rule, raw string) {
		out = append(out, violation{name: name + " " + rule, field: name, body: set(raw)})
	}
	if required {
		add("missing", "")
	}
	switch p.Type {
	case "string":
		add("not a string", `7`)
		for _, c := range controls {
			add("with "+c, `"a`+c+`b"`)
		}
	case "integer":
		add("a string", `"1"`)
		add("a fraction", `1.5`)
		add("beyond int64", `99999999999999999999`)
	case "array":
		add("an object", `{}`)
	default:
		t.Errorf("%s: type %q", name, p.Type)
	}
	if p.MinLength != nil && *p.MinLength > 0 {
		add("under minLength", str(strings.Repeat("a", *p.MinLength-1)))
	}
	if p.MaxLength != nil {
		add("over maxLength", str(strings.Repeat("a", *p.MaxLength+1)))
	}
	if p.Minimum != nil {
		add("under minimum", strconv.FormatInt(*p.Minimum-1, 10))
	}
	if p.Maximum != nil {
		add("over maximum", strconv.FormatInt(*p.Maximum+1, 10))
	}
	// Values breaking each pattern and format the schemas use.
	breaking := map[string][]string{
		"pattern ^[A-Z]{3}$": {"eur", "EURO", "EU", "E1R", "ÉUR", "EU\u00a0"},
		"format email":       hostileEmails,
	}
	for _, rule := range []string{"pattern " + p.Pattern, "format " + p.Format} {
		if strings.HasSuffix(rule, " ") {
			continue // no such rule here
		}
		bad, ok := breaking[rule]
		if !ok {
			t.Errorf("%s: no values breaking the %s", name, rule)
		}
		for _, s := range bad {
			add("breaking the "+rule+": "+s, str(s))
		}
	}
	if p.Type == "array" {
		itemsWith := func(n int) string {
			items := make([]string, n)
			for i := range items {
				items[i] = `{"sku":"s","quantity":1,"unitPriceCents":1}`
			}
			return "[" + strings.Join(items, ",") + "]"
		}
		if p.MinItems != nil {
			add("under minItems", itemsWith(*p.MinItems-1))
		}
		if p.MaxItems != nil {
			add("over maxItems", itemsWith(*p.MaxItems+1))
		}
		if p.Items == nil || p.Items.Type != "object" {
			t.Fatalf("%s: items are not objects", name)
		}
		for item, ip := range p.Items.Properties {
			if !slices.Contains(itemFields, item) {
				t.Errorf("the schema's %s.%s is not a request field", name, item)
			}
			out = append(out, violations(t, name+"[0]."+item, ip, slices.Contains(p.Items.Required, item))...)
		}
	}
	return out
}

// TestCreateOrderRefusesHostileInput posts what a hostile client sends:
// every case gets a 4xx problem, never a 5xx, and writes nothing.
func TestCreateOrderRefusesHostileInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	type hostile struct {
		name   string
		body   string
		header map[string]string
		status int
		field  string // named by a 422
	}
	var tests []hostile
	for _, e := range hostileEmails {
		tests = append(tests, hostile{"email " + e, withField(t, "email", strconv.Quote(e)), nil, 422, "email"})
	}
	for _, c := range controls {
		tests = append(tests,
			hostile{"customerId with " + c, withField(t, "customerId", `"c`+c+`"`), nil, 422, "customerId"},
			hostile{"sku with " + c, withItemField(t, "sku", `"s`+c+`"`), nil, 422, "items[0].sku"},
			hostile{"paymentToken with " + c, withField(t, "paymentToken", `"tok_visa`+c+`"`), nil, 422, "paymentToken"},
			hostile{"email with " + c, withField(t, "email", `"ada`+c+`@example.com"`), nil, 422, "email"},
			hostile{"currency with " + c, withField(t, "currency", `"EU`+c+`"`), nil, 422, "currency"},
		)
	}
	raw := func(field, bytes string) string {
		return strings.Replace(validBody, `"`+field+`":"`, `"`+field+`":"`+bytes, 1)
	}
	tests = append(tests,
		hostile{"raw DEL in customerId", raw("customerId", "\x7f"), nil, 422, "customerId"},
		hostile{"raw C1 control in sku", raw("sku", "\u0085"), nil, 422, "items[0].sku"},
		hostile{"invalid UTF-8 in customerId", raw("customerId", "\xff"), nil, 400, ""},
		hostile{"invalid UTF-8 in sku", raw("sku", "\xc3("), nil, 400, ""},
		hostile{"invalid UTF-8 in paymentToken", raw("paymentToken", "\xed\xa0\x80"), nil, 400, ""},
		hostile{"invalid UTF-8 in a key", strings.Replace(validBody, `"currency"`, "\"curr\xe9ncy\"", 1), nil, 400, ""},
		hostile{"lone surrogate escape", raw("customerId", `\ud800`), nil, 400, ""},
		hostile{"low surrogate escape", raw("email", `\udfff`), nil, 400, ""},
		hostile{"Idempotency-Key not UTF-8", validBody, map[string]string{"Idempotency-Key": "k\xff"}, 400, ""},
	)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := b.post(t, tc.body, tc.header)
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.status, tc.status, resp.body)
			}
			p := resp.problem(t)
			if tc.field != "" && !slices.ContainsFunc(p.Errors, func(fe httpserver.FieldError) bool { return fe.Field == tc.field }) {
				t.Errorf("errors %+v do not name %q", p.Errors, tc.field)
			}
			b.assertNothingWritten(t)
		})
	}
}

// TestOrderPathRefusesHostileIDs asks for orders by ids no order can have:
// each answers 404 problem+json (as an unknown order does), never a 5xx,
// and a cancel writes nothing.
func TestOrderPathRefusesHostileIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, id := range hostileIDs {
		for _, path := range []string{"/orders/" + id, "/orders/" + id + "/cancel"} {
			method := http.MethodGet
			if strings.HasSuffix(path, "/cancel") {
				method = http.MethodPost
			}
			t.Run(method+" "+path, func(t *testing.T) {
				resp := do(t, method, b.url+path, "", nil)
				if resp.status != http.StatusNotFound {
					t.Fatalf("status %d, want 404; body %s", resp.status, resp.body)
				}
				resp.problem(t)
			})
		}
	}
	b.assertNothingWritten(t)
}

// hostileIDs are path segments, escaped as a client sends them, that are
// not UUIDs.
var hostileIDs = []string{
	"%00", "%FF", "%C3%28", "%ED%A0%80", "%0A", "%7F", "%C2%85", "a%2Fb", "not-a-uuid",
	strings.Repeat("a", 5000), "0b9f6a52-4c1e-4d8a-9a57-3f2c8e1d7b6%00", "0b9f6a52-4c1e-4d8a-9a57-3f2c8e1d7b64%00",
}
