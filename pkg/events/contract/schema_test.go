package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// goEvents returns a fully populated value of every v1 event type: every
// field, nested ones included, is non-zero (TestGoEventsFullyPopulated), so
// marshalling them exercises every field of every schema.
func goEvents() []Event {
	items := []Item{
		{SKU: "MUG-001", Quantity: 2, UnitPriceCents: 1250},
		{SKU: "TEE-042", Quantity: 1, UnitPriceCents: 1999},
	}
	events := []Event{
		&OrderPlaced{CustomerID: "cust-42", Email: "ada@example.com", Items: items, TotalCents: 4499, Currency: "EUR", PaymentToken: "tok_visa"},
		&OrderCancelled{Reason: "out_of_stock"},
		&PaymentCaptured{PaymentID: "pay_1", CustomerID: "cust-42", Email: "ada@example.com", AmountCents: 4499, Currency: "EUR", Items: items},
		&PaymentFailed{CustomerID: "cust-42", Email: "ada@example.com", Reason: "fraud_suspected"},
		&PaymentRefunded{PaymentID: "pay_1", CustomerID: "cust-42", Email: "ada@example.com", AmountCents: 4499, Reason: "out_of_stock"},
		&StockUnavailable{SKUs: []string{"TEE-042"}},
		&PickScheduled{PickID: "pick_1"},
		&OrderShipped{PickID: "pick_1", TrackingID: "TRK-1"},
		&PickCancelled{PickID: "pick_1"},
		&PointsAwarded{CustomerID: "cust-42", Points: 44},
	}
	for _, e := range events {
		*e.Meta() = Envelope{
			Event:      e.Name(),
			Version:    1,
			EventID:    "6c0e7a3e-8a51-4c3f-9a4c-1b2d3e4f5a60",
			OrderID:    "0b9f6a52-4c1e-4d8a-9a57-3f2c8e1d7b64",
			OccurredAt: time.Date(2026, 3, 14, 9, 26, 53, 589_000_000, time.UTC),
		}
	}
	return events
}

func TestGoEventsFullyPopulated(t *testing.T) {
	var check func(where string, v reflect.Value)
	check = func(where string, v reflect.Value) {
		if v.IsZero() {
			t.Errorf("%s is zero; populate it so its schema is exercised", where)
			return
		}
		switch v.Kind() {
		case reflect.Struct:
			if v.Type() == reflect.TypeFor[time.Time]() {
				return
			}
			for i := range v.NumField() {
				check(where+"."+v.Type().Field(i).Name, v.Field(i))
			}
		case reflect.Slice:
			for i := range v.Len() {
				check(fmt.Sprintf("%s[%d]", where, i), v.Index(i))
			}
		}
	}
	for _, e := range goEvents() {
		check(e.Name(), reflect.ValueOf(e).Elem())
	}
}

// TestEveryEventHasSchema ties the three lists of events together: Go types,
// topics and schemas.
func TestEveryEventHasSchema(t *testing.T) {
	goNames := map[string]bool{}
	for _, e := range goEvents() {
		goNames[e.Name()] = true
		if !Known(e.Name(), 1) {
			t.Errorf("Go type %s has no schema schemas/v1/%s.json", e.Name(), e.Name())
		}
		if _, ok := TopicOf(e.Name()); !ok {
			t.Errorf("Go type %s has no topic in TopicOf", e.Name())
		}
	}
	for _, f := range schemaFiles {
		if _, ok := TopicOf(f.name); !ok {
			t.Errorf("%s: event %s has no topic in TopicOf", f.path, f.name)
		}
		if f.version == 1 && !goNames[f.name] {
			t.Errorf("%s: no Go type for it in goEvents", f.path)
		}
	}
	if len(goNames) != 10 {
		t.Errorf("got %d v1 events, docs/design.md lists 10", len(goNames))
	}
}

// decodeSchema decodes a schema, rejecting keywords schemaDoc does not know,
// so the catalogue renders every constraint a schema has.
func decodeSchema(t *testing.T, f schemaFile) *schemaDoc {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(f.raw))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var s schemaDoc
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("%s: %v (a new keyword needs a field in schemaDoc and rendering in Catalogue)", f.path, err)
	}
	return &s
}

func TestSchemaConventions(t *testing.T) {
	for _, f := range schemaFiles {
		t.Run(f.path, func(t *testing.T) {
			s := decodeSchema(t, f)
			if s.Schema != "https://json-schema.org/draft/2020-12/schema" {
				t.Errorf("$schema = %q, want draft 2020-12", s.Schema)
			}
			if want := schemaID(f.schemaKey); s.ID != want {
				t.Errorf("$id = %q, want %q", s.ID, want)
			}
			if s.Title != f.name {
				t.Errorf("title = %q, want %q", s.Title, f.name)
			}
			topic, _ := TopicOf(f.name)
			if want := "Emitted by the " + topic + " service"; !strings.HasPrefix(s.Description, want) {
				t.Errorf("description must start with %q (who emits it), then say when and which invariants hold", want)
			}
			if !strings.Contains(s.Description, "Invariants:") {
				t.Errorf("description must state the event's invariants (\"Invariants: ...\")")
			}
			checkObject(t, "", s)

			envelope := map[string]string{
				"event":      `const "` + f.name + `"`,
				"version":    fmt.Sprintf("const %d", f.version),
				"eventId":    "format uuid",
				"orderId":    "format uuid",
				"occurredAt": "format date-time",
			}
			for name, want := range envelope {
				p := s.Properties[name]
				if p == nil {
					t.Errorf("envelope field %q missing", name)
					continue
				}
				got := "format " + p.Format
				if p.Const != nil {
					got = "const " + string(p.Const)
				}
				if got != want {
					t.Errorf("/%s: %s, want %s", name, got, want)
				}
			}
			if len(s.Examples) == 0 {
				t.Errorf("no examples; the catalogue shows the first and tests validate all")
			}
		})
	}
}

// checkObject checks the conventions every object in a schema keeps: a
// description on every property, every property required, and unknown
// properties allowed so newer producers can add fields.
func checkObject(t *testing.T, at string, s *schemaDoc) {
	t.Helper()
	if s.Type != "object" {
		t.Errorf("%s: type %q, want object", at, s.Type)
	}
	if s.AdditionalProperties == nil || !*s.AdditionalProperties {
		t.Errorf("%s: additionalProperties must be true (forward compatibility)", at)
	}
	names := make([]string, 0, len(s.Properties))
	for name := range s.Properties {
		names = append(names, name)
	}
	slices.Sort(names)
	required := slices.Sorted(slices.Values(s.Required))
	if !slices.Equal(names, required) {
		t.Errorf("%s: required %v, want every property %v", at, required, names)
	}
	for name, p := range s.Properties {
		where := at + "/" + name
		if p.Description == "" {
			t.Errorf("%s: no description", where)
		}
		switch {
		case p.Type == "object":
			checkObject(t, where, p)
		case p.Type == "array" && p.Items == nil:
			t.Errorf("%s: array without items", where)
		case p.Type == "array" && p.Items.Type == "object":
			checkObject(t, where+"/items", p.Items)
		case p.Type == "array" && p.Items.Description == "":
			t.Errorf("%s/items: no description", where)
		}
	}
}

// TestSchemasMatchGoTypes checks both directions between each Go type and
// its schema: every JSON field of the type is a property of the right JSON
// type, and every property is a field. Validating marshalled values alone
// would miss a Go field that the schema lacks, since schemas allow unknown
// fields.
func TestSchemasMatchGoTypes(t *testing.T) {
	for _, e := range goEvents() {
		f := schemaIndex[schemaKey{e.Name(), 1}]
		agree(t, e.Name(), reflect.TypeOf(e).Elem(), decodeSchema(t, f))
	}
}

func agree(t *testing.T, at string, typ reflect.Type, s *schemaDoc) {
	t.Helper()
	fields := jsonFields(typ)
	for name, ft := range fields {
		p, ok := s.Properties[name]
		if !ok {
			t.Errorf("%s: Go field %q is not in the schema", at, name)
			continue
		}
		agreeType(t, at+"/"+name, ft, p)
	}
	for name := range s.Properties {
		if _, ok := fields[name]; !ok {
			t.Errorf("%s: schema property %q has no Go field", at, name)
		}
	}
}

func agreeType(t *testing.T, at string, ft reflect.Type, p *schemaDoc) {
	t.Helper()
	var want string
	switch {
	case ft == reflect.TypeFor[time.Time]():
		want = "string"
		if p.Format != "date-time" {
			t.Errorf("%s: time.Time needs format date-time, got %q", at, p.Format)
		}
	case ft.Kind() == reflect.String:
		want = "string"
	case ft.Kind() >= reflect.Int && ft.Kind() <= reflect.Uint64:
		want = "integer"
	case ft.Kind() == reflect.Slice:
		want = "array"
		if p.Items == nil {
			break
		}
		if ft.Elem().Kind() == reflect.Struct {
			agree(t, at+"/items", ft.Elem(), p.Items)
		} else {
			agreeType(t, at+"/items", ft.Elem(), p.Items)
		}
	case ft.Kind() == reflect.Struct:
		want = "object"
		agree(t, at, ft, p)
	default:
		t.Errorf("%s: no schema type for Go %s", at, ft)
		return
	}
	if p.Type != want {
		t.Errorf("%s: schema type %q, Go %s marshals as %s", at, p.Type, ft, want)
	}
}

// jsonFields maps the JSON names of a struct's fields to their types,
// flattening embedded structs the way encoding/json does.
func jsonFields(typ reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			for n, ft := range jsonFields(f.Type) {
				fields[n] = ft
			}
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

func TestValidateExamples(t *testing.T) {
	for _, f := range schemaFiles {
		s := decodeSchema(t, f)
		for i, ex := range s.Examples {
			if err := Validate(f.name, f.version, ex); err != nil {
				t.Errorf("%s example %d: %v", f.path, i, err)
			}
		}
	}
}

func TestValidateGoValues(t *testing.T) {
	for _, e := range goEvents() {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := Validate(e.Name(), e.Meta().Version, data); err != nil {
			t.Errorf("%s marshalled from Go: %v\n%s", e.Name(), err, data)
		}
	}
}

// example returns the first example of event name v1 as a map to mutate.
func example(t *testing.T, name string) map[string]any {
	t.Helper()
	var s schemaDoc
	if err := json.Unmarshal(schemaIndex[schemaKey{name, 1}].raw, &s); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(s.Examples[0], &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func item(m map[string]any, i int) map[string]any { return m["items"].([]any)[i].(map[string]any) }

func TestValidateAllowsUnknownFields(t *testing.T) {
	m := example(t, "OrderPlaced")
	m["giftWrap"] = true
	item(m, 0)["colour"] = "blue"
	data, _ := json.Marshal(m)
	if err := Validate("OrderPlaced", 1, data); err != nil {
		t.Errorf("a field added by a newer producer must pass: %v", err)
	}
}

func TestValidateInvalid(t *testing.T) {
	manyItems := func(n int) []any {
		items := make([]any, n)
		for i := range items {
			items[i] = map[string]any{"sku": "MUG-001", "quantity": 1, "unitPriceCents": 100}
		}
		return items
	}
	tests := []struct {
		name   string
		event  string
		mutate func(m map[string]any)
		paths  []string // every failing field, and only those
	}{
		{"missing field", "OrderPlaced", func(m map[string]any) { delete(m, "email") }, []string{"/email"}},
		{"missing envelope field", "PickScheduled", func(m map[string]any) { delete(m, "eventId") }, []string{"/eventId"}},
		{"missing item field", "OrderPlaced", func(m map[string]any) { delete(item(m, 1), "sku") }, []string{"/items/1/sku"}},
		{"wrong type string for integer", "OrderPlaced", func(m map[string]any) { m["totalCents"] = "4499" }, []string{"/totalCents"}},
		{"wrong type fraction for integer", "OrderPlaced", func(m map[string]any) { item(m, 0)["quantity"] = 1.5 }, []string{"/items/0/quantity"}},
		{"wrong type object for array", "StockUnavailable", func(m map[string]any) { m["skus"] = map[string]any{} }, []string{"/skus"}},
		{"null field", "PickCancelled", func(m map[string]any) { m["pickId"] = nil }, []string{"/pickId"}},
		{"bad uuid eventId", "OrderPlaced", func(m map[string]any) { m["eventId"] = "not-a-uuid" }, []string{"/eventId"}},
		{"bad uuid orderId", "PointsAwarded", func(m map[string]any) { m["orderId"] = "1234" }, []string{"/orderId"}},
		{"bad email", "OrderPlaced", func(m map[string]any) { m["email"] = "ada.example.com" }, []string{"/email"}},
		{"bad email in payment", "PaymentCaptured", func(m map[string]any) { m["email"] = "ada@" }, []string{"/email"}},
		{"bad date-time", "OrderShipped", func(m map[string]any) { m["occurredAt"] = "yesterday" }, []string{"/occurredAt"}},
		{"quantity 0", "OrderPlaced", func(m map[string]any) { item(m, 0)["quantity"] = 0 }, []string{"/items/0/quantity"}},
		{"quantity 1001", "OrderPlaced", func(m map[string]any) { item(m, 1)["quantity"] = 1001 }, []string{"/items/1/quantity"}},
		{"unitPriceCents 0", "OrderPlaced", func(m map[string]any) { item(m, 0)["unitPriceCents"] = 0 }, []string{"/items/0/unitPriceCents"}},
		{"unitPriceCents over 10,000,000", "PaymentCaptured", func(m map[string]any) { item(m, 0)["unitPriceCents"] = 10_000_001 }, []string{"/items/0/unitPriceCents"}},
		{"101 items", "OrderPlaced", func(m map[string]any) { m["items"] = manyItems(101) }, []string{"/items"}},
		{"no items", "OrderPlaced", func(m map[string]any) { m["items"] = []any{} }, []string{"/items"}},
		{"lower-case currency", "OrderPlaced", func(m map[string]any) { m["currency"] = "eur" }, []string{"/currency"}},
		{"4-letter currency", "PaymentCaptured", func(m map[string]any) { m["currency"] = "EURO" }, []string{"/currency"}},
		{"empty customerId", "OrderPlaced", func(m map[string]any) { m["customerId"] = "" }, []string{"/customerId"}},
		{"65-char customerId", "PaymentFailed", func(m map[string]any) { m["customerId"] = strings.Repeat("c", 65) }, []string{"/customerId"}},
		{"unknown reason", "PaymentFailed", func(m map[string]any) { m["reason"] = "insufficient_funds" }, []string{"/reason"}},
		{"no skus", "StockUnavailable", func(m map[string]any) { m["skus"] = []any{} }, []string{"/skus"}},
		{"negative points", "PointsAwarded", func(m map[string]any) { m["points"] = -1 }, []string{"/points"}},
		{"wrong event name", "OrderPlaced", func(m map[string]any) { m["event"] = "OrderCancelled" }, []string{"/event"}},
		{"wrong version", "OrderCancelled", func(m map[string]any) { m["version"] = 2 }, []string{"/version"}},
		{"several fields at once", "OrderPlaced", func(m map[string]any) {
			m["email"] = "nope"
			item(m, 0)["quantity"] = 0
			delete(m, "currency")
			m["orderId"] = 7
		}, []string{"/currency", "/email", "/items/0/quantity", "/orderId"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := example(t, tt.event)
			tt.mutate(m)
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			err = Validate(tt.event, 1, data)
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("Validate = %v, want *ValidationError", err)
			}
			var paths []string
			for _, f := range verr.Fields {
				if f.Message == "" {
					t.Errorf("%s: empty message", f.Path)
				}
				if !slices.Contains(paths, f.Path) {
					paths = append(paths, f.Path)
				}
			}
			if !slices.Equal(paths, tt.paths) {
				t.Errorf("failing fields %v, want %v (%v)", paths, tt.paths, err)
			}
			for _, p := range tt.paths {
				if !strings.Contains(err.Error(), p+": ") {
					t.Errorf("error %q does not name %s", err, p)
				}
			}
		})
	}
}

func TestValidateWholeEvent(t *testing.T) {
	err := Validate("OrderPlaced", 1, []byte(`[]`))
	var verr *ValidationError
	if !errors.As(err, &verr) || len(verr.Fields) != 1 || verr.Fields[0].Path != "" {
		t.Errorf("Validate(array) = %#v, want one error for the whole event (path \"\")", err)
	}
}

func TestValidateUnknownEvent(t *testing.T) {
	data, _ := json.Marshal(goEvents()[0])
	for _, tt := range []struct {
		name    string
		version int
	}{{"OrderPlaced", 2}, {"OrderPlaced", 0}, {"OrderRejected", 1}, {"", 1}} {
		err := Validate(tt.name, tt.version, data)
		if !errors.Is(err, ErrUnknownEvent) {
			t.Errorf("Validate(%q, %d) = %v, want ErrUnknownEvent", tt.name, tt.version, err)
		}
		if Known(tt.name, tt.version) {
			t.Errorf("Known(%q, %d) = true", tt.name, tt.version)
		}
		if _, ok := Schema(tt.name, tt.version); ok {
			t.Errorf("Schema(%q, %d) found", tt.name, tt.version)
		}
	}
}

func TestValidateNotJSON(t *testing.T) {
	for _, data := range []string{``, `{"event":`, `{} {}`, `OrderPlaced`} {
		if err := Validate("OrderPlaced", 1, []byte(data)); !errors.Is(err, ErrNotJSON) {
			t.Errorf("Validate(%q) = %v, want ErrNotJSON", data, err)
		}
	}
}

func TestKnownAndSchema(t *testing.T) {
	for _, e := range goEvents() {
		if !Known(e.Name(), 1) {
			t.Errorf("Known(%s, 1) = false", e.Name())
		}
		raw, ok := Schema(e.Name(), 1)
		if !ok || !bytes.Equal(raw, schemaIndex[schemaKey{e.Name(), 1}].raw) {
			t.Fatalf("Schema(%s, 1) = %d bytes, %v", e.Name(), len(raw), ok)
		}
		raw[0] = 'X' // the caller's copy; the package's stays intact
		if again, _ := Schema(e.Name(), 1); again[0] != '{' {
			t.Errorf("Schema(%s, 1) returned the package's own bytes", e.Name())
		}
	}
}

// TestValidateConcurrent runs the first compile and many validations at
// once, for the race detector.
func TestValidateConcurrent(t *testing.T) {
	events := goEvents()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				e := events[(g+i)%len(events)]
				data, _ := json.Marshal(e)
				if err := Validate(e.Name(), 1, data); err != nil {
					t.Error(err)
					return
				}
				if err := Validate(e.Name(), 1, []byte(`{}`)); err == nil {
					t.Error("empty event passed")
					return
				}
			}
		})
	}
	wg.Wait()
}
