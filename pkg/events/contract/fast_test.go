package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestFastCoversEverySchema fails when a schema uses a keyword, format or
// literal the fast validator does not check: such a schema would be
// checked by the reference validator alone, at its cost, until fast.go
// learns it.
func TestFastCoversEverySchema(t *testing.T) {
	schemas, err := compiled()
	if err != nil {
		t.Fatal(err)
	}
	fast, err := fastSchemas()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range schemaFiles {
		if _, err := compileFast(schemas[f.schemaKey], ""); err != nil {
			t.Errorf("%s: %v", f.path, err)
		}
		if fast[f.schemaKey] == nil {
			t.Errorf("%s: no fast validator", f.path)
		}
	}
}

// compileTest compiles a schema for a test with the reference compiler's
// settings.
func compileTest(t testing.TB, schema string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("test.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("test.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFastRefusesUnknownKeywords shows the guard at work: every keyword
// the schemas do not use yet is refused, naming it, even deep inside.
func TestFastRefusesUnknownKeywords(t *testing.T) {
	for schema, want := range map[string]string{
		`{"uniqueItems": true}`:   "UniqueItems",
		`{"exclusiveMinimum": 1}`: "ExclusiveMinimum",
		`{"multipleOf": 2}`:       "MultipleOf",
		`{"$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a"}`:     "Ref",
		`{"anyOf": [{"type": "string"}]}`:                               "AnyOf",
		`{"not": {"type": "string"}}`:                                   "Not",
		`{"patternProperties": {"^a": {}}}`:                             "PatternProperties",
		`{"additionalProperties": {"type": "string"}}`:                  "additionalProperties",
		`{"propertyNames": {"maxLength": 3}}`:                           "PropertyNames",
		`{"minProperties": 1}`:                                          "MinProperties",
		`{"dependentRequired": {"a": ["b"]}}`:                           "DependentRequired",
		`{"prefixItems": [{}]}`:                                         "PrefixItems",
		`{"contains": {}}`:                                              "Contains",
		`{"format": "ipv4"}`:                                            `"ipv4"`,
		`{"const": {"a": 1}}`:                                           "map",
		`{"enum": [[1]]}`:                                               "[]interface",
		`{"exclusiveMaximum": 1}`:                                       "ExclusiveMaximum",
		`{"unevaluatedProperties": false}`:                              "UnevaluatedProperties",
		`{"if": {"type": "string"}, "then": {"minLength": 1}}`:          "If",
		`{"properties": {"a": {"items": {"properties": {"b": true}}}}}`: "Bool",
	} {
		_, err := compileFast(compileTest(t, schema), "")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: compileFast = %v, want an error naming %s", schema, err, want)
		}
	}
}

// sameVerdict fails t unless the fast validator and the reference accept or
// refuse data alike for event k, and returns whether they accept it.
func sameVerdict(t *testing.T, k schemaKey, data []byte) bool {
	t.Helper()
	fast, err := fastSchemas()
	if err != nil {
		t.Fatal(err)
	}
	got := fast[k].accepts(data)
	ref := validateReference(k, data)
	if got != (ref == nil) {
		t.Errorf("%s: fast accepts %v, reference says %v, for\n%q", k.name, got, ref, data)
	}
	return got
}

// TestFastAgreesWithReference feeds both validators every mutation of
// every event that hostileDocuments makes.
func TestFastAgreesWithReference(t *testing.T) {
	n, accepted := 0, 0
	for k, data := range hostileDocuments(t) {
		if sameVerdict(t, k, data) {
			accepted++
		}
		n++
	}
	t.Logf("%d documents, %d accepted", n, accepted)
}

// FuzzValidate holds the fast validator to the reference on any bytes,
// for each schema. Its seeds, run by go test, are one in 20 of
// hostileDocuments' small ones (TestFastAgreesWithReference runs all).
func FuzzValidate(f *testing.F) {
	i := 0
	for k, data := range hostileDocuments(f) {
		if i++; i%20 == 0 && len(data) < 2000 {
			f.Add(k.name, data)
		}
	}
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		k := schemaKey{name, 1}
		if !Known(k.name, k.version) {
			return
		}
		sameVerdict(t, k, data)
	})
}

// hostileDocuments yields, for every event, its example and Go value, and
// variations of both: every field missing, replaced by values of every
// type and edge, given twice, with escapes and bad UTF-8; extra fields;
// deep nesting; and every byte cut, dropped or replaced.
func hostileDocuments(tb testing.TB) func(yield func(schemaKey, []byte) bool) {
	tb.Helper()
	var docs []struct {
		k    schemaKey
		data []byte
	}
	add := func(k schemaKey, data []byte) {
		docs = append(docs, struct {
			k    schemaKey
			data []byte
		}{k, data})
	}
	for _, e := range goEvents() {
		k := schemaKey{e.Name(), 1}
		data, err := json.Marshal(e)
		if err != nil {
			tb.Fatal(err)
		}
		var ex schemaDoc
		if err := json.Unmarshal(schemaIndex[k].raw, &ex); err != nil {
			tb.Fatal(err)
		}
		for _, doc := range append([][]byte{data}, rawMessages(ex.Examples)...) {
			add(k, doc)
			for _, m := range mutations(tb, doc) {
				add(k, m)
			}
		}
		if k.name == "OrderPlaced" { // the richest; every byte of every event would take minutes under -race
			for _, b := range byteMutations(data) {
				add(k, b)
			}
		}
	}
	return func(yield func(schemaKey, []byte) bool) {
		for _, d := range docs {
			if !yield(d.k, d.data) {
				return
			}
		}
	}
}

func rawMessages(ms []json.RawMessage) [][]byte {
	out := make([][]byte, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// edgeValues are raw JSON values to put in place of any field.
var edgeValues = []string{
	`null`, `true`, `false`, `{}`, `[]`, `[1]`, `[{}]`, `[null]`, `{"a":1}`,
	`0`, `-0`, `1`, `-1`, `2`, `44`, `1000`, `1001`, `10000000`, `10000001`, `1.0`, `1.5`, `-1.0`, `1e0`, `1E2`, `1e+2`,
	`1e-2`, `10e-1`, `0.1e1`, `1e3`, `1.000000000000000000001`, `99999999999999999999`, `-99999999999999999999`,
	`123456789012345678`, `1234567890123456789`, `1e400`, `1e1000001`, `-1e1000001`, `0e1000001`,
	`""`, `"x"`, `"EUR"`, `"eur"`, `"EURO"`, `"EU"`, `"E\u0055R"`, `"EUR\n"`, `"\u00c9UR"`, `"\u0000"`,
	`"OrderPlaced"`, `"OrderCancelled"`, `"Order\u0050laced"`, `"declined"`, `"fraud_suspected"`, `"declined "`,
	`"` + strings.Repeat("c", 64) + `"`, `"` + strings.Repeat("c", 65) + `"`, `"` + strings.Repeat("é", 64) + `"`,
	`"` + strings.Repeat("é", 65) + `"`, `"` + strings.Repeat("\\u00e9", 65) + `"`,
	"\"\xff\"", "\"a\xc3\"", "\"\xed\xa0\x80\"", "\"\xef\xbf\xbd\"", `"\ud800"`, `"\udc00"`, `"\ud83d\ude00"`, `"\ud800\u0041"`,
	`"\ud800\ud800"`, `"\/\b\f\n\r\t\"\\"`,
	`"6c0e7a3e-8a51-4c3f-9a4c-1b2d3e4f5a60"`, `"6C0E7A3E-8A51-4C3F-9A4C-1B2D3E4F5A60"`, `"6c0e7a3e8a514c3f9a4c1b2d3e4f5a60"`,
	`"6c0e7a3e-8a51-4c3f-9a4c-1b2d3e4f5a6"`, `"6c0e7a3e-8a51-4c3f-9a4c-1b2d3e4f5a6g"`, `"6c0e7a3e-8a51-4c3f-9a4c-1b2d3e4f5a6\u0030"`,
	`"2026-03-14T09:26:53.589Z"`, `"2026-03-14t09:26:53z"`, `"2026-02-29T00:00:00Z"`, `"2024-02-29T00:00:00Z"`,
	`"2026-03-14T23:59:60Z"`, `"2026-03-14T23:59:60+01:00"`, `"2026-03-14T22:59:60-01:00"`, `"2026-03-14T+9:+6:+3Z"`,
	`"2026-03-14T09:26:53.Z"`, `"2026-03-14T09:26:53+0100"`, `"2026-13-14T09:26:53Z"`, `"2026-00-14T09:26:53Z"`,
	`"2026-03-14 09:26:53Z"`, `"0000-02-29T00:00:00Z"`, `"1900-02-29T00:00:00Z"`, `"2026-03-14T24:00:00Z"`,
	`"ada@example.com"`, `"ada@-example.com"`, `"ada@example-.com"`, `"ada@ex_ample.com"`, `"ada@"`, `"@example.com"`,
	`"ada.example.com"`, `"\"a b\"@example.com"`, `"a..b@example.com"`, `".a@example.com"`, `"a@[127.0.0.1]"`,
	`"a@[IPv6:::1]"`, `"a@[IPv6:fe80::1%eth0]"`, `"a@[+1.2.3.4]"`, `"a@[01.2.3.4]"`, `"a@localhost."`, `"jos\u00e9@example.com"`,
	`"` + strings.Repeat("a", 64) + `@example.com"`, `"` + strings.Repeat("a", 65) + `@example.com"`,
	`"a@` + strings.Repeat("b", 63) + `.com"`, `"a@` + strings.Repeat("b", 64) + `.com"`,
}

// mutations returns doc with each field (nested ones included) missing,
// replaced by each edge value, given twice, and with fields added.
func mutations(tb testing.TB, doc []byte) [][]byte {
	tb.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	var walk func(cur any, set func(any))
	marshal := func() []byte {
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	walk = func(cur any, set func(any)) {
		for _, e := range edgeValues {
			set(json.RawMessage(e))
			out = append(out, marshal())
		}
		set(cur)
		switch c := cur.(type) {
		case map[string]any:
			for _, name := range slices.Sorted(maps.Keys(c)) {
				val := c[name]
				delete(c, name)
				out = append(out, marshal())
				c[name] = val
				walk(val, func(x any) { c[name] = x })
			}
			c["extra"] = map[string]any{"nested": []any{1, "x", nil}}
			out = append(out, marshal())
			delete(c, "extra")
		case []any:
			for i := range c {
				walk(c[i], func(x any) { c[i] = x })
			}
		}
	}
	walk(v, func(x any) { v = x })

	// Names given twice, escaped, or differing in case; the last one counts.
	obj := bytes.TrimSuffix(bytes.TrimSpace(doc), []byte("}"))
	for _, name := range []string{"event", "version", "eventId", "email", "items", "currency", "points", "skus", "pickId", "reason"} {
		for _, e := range []string{`null`, `"x"`, `1`, `"ada@example.com"`} {
			out = append(out, []byte(fmt.Sprintf(`%s,%q:%s}`, obj, name, e)))
			out = append(out, []byte(fmt.Sprintf(`{%q:%s,%s}`, name, e, doc[1:len(doc)-1])))
		}
		escaped := `"\u` + fmt.Sprintf("%04x", name[0]) + name[1:] + `"`
		out = append(out, []byte(fmt.Sprintf(`%s,%s:null}`, obj, escaped)))
		out = append(out, []byte(fmt.Sprintf(`%s,%q:null}`, obj, strings.ToUpper(name))))
		out = append(out, []byte(fmt.Sprintf("%s,\"%s\xff\":null}", obj, name)))
	}
	// Nesting at encoding/json's limit (10,000 with the event itself) and beyond.
	for _, depth := range []int{1, 100, 9999, 10000} {
		out = append(out, []byte(fmt.Sprintf(`%s,"deep":%s%s}`, obj, strings.Repeat("[", depth), strings.Repeat("]", depth))))
		out = append(out, []byte(fmt.Sprintf(`%s,"deep":%s1%s}`, obj, strings.Repeat(`{"a":`, depth), strings.Repeat("}", depth))))
	}
	// Around the document.
	for _, w := range []string{" ", "\t\n\r ", "\ufeff", "\x00", "x", "{}", "1", "//", "\u00a0"} {
		out = append(out, append([]byte(w), doc...), append(slices.Clone(doc), w...))
	}
	return out
}

// byteMutations returns doc cut at every byte, without each byte, and with
// each byte replaced by a few that matter to the grammar.
func byteMutations(doc []byte) [][]byte {
	var out [][]byte
	for i := range doc {
		out = append(out, doc[:i])
		out = append(out, slices.Concat(doc[:i], doc[i+1:]))
		for _, c := range []byte{'"', '\\', '{', '}', '[', ']', ',', ':', ' ', '0', '-', '.', 'e', 'x', 0, 0x1f, 0x7f, 0xff} {
			if c != doc[i] {
				out = append(out, slices.Concat(doc[:i], []byte{c}, doc[i+1:]))
			}
		}
	}
	return out
}
