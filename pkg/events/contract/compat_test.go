package contract

// The compatibility check of a new event version: a v2 schema is accepted
// beside v1, v1 events and v1 consumers keep working, and v2 breaks no v1
// consumer. testdata/v2/OrderPlaced.json is a test-only v2 (an optional
// giftMessage added); no v2 is released.
//
// The rule enforced (compatibleWithV1): every field v1 requires, at any
// depth, is still required in v2 with the same "type" and "const" (the
// version const aside), and v2 keeps additionalProperties open wherever v1
// had it open. A v1 consumer that decodes the v1 fields then reads a v2
// event's data unchanged; what it does with the record itself is the
// consumer runner's rule (TestV1ConsumerDeadLettersV2).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileBeside compiles the released schemas and the test-only extra ones
// in one compiler, as compiled() does: v2 registered beside v1.
func compileBeside(t *testing.T, extra map[schemaKey][]byte) map[schemaKey]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	all := map[schemaKey][]byte{}
	for _, f := range schemaFiles {
		all[f.schemaKey] = f.raw
	}
	for k, raw := range extra {
		if _, ok := all[k]; ok {
			t.Fatalf("%s v%d is released: a test schema must not replace it", k.name, k.version)
		}
		all[k] = raw
	}
	for k, raw := range all {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s v%d: %v", k.name, k.version, err)
		}
		if err := c.AddResource(schemaID(k), doc); err != nil {
			t.Fatalf("%s v%d: %v", k.name, k.version, err)
		}
	}
	out := map[schemaKey]*jsonschema.Schema{}
	for k := range all {
		s, err := c.Compile(schemaID(k))
		if err != nil {
			t.Fatalf("compile %s v%d: %v", k.name, k.version, err)
		}
		out[k] = s
	}
	return out
}

func readV2(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/v2/OrderPlaced.json")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func examplesOf(t *testing.T, raw []byte) []json.RawMessage {
	t.Helper()
	var s struct {
		Examples []json.RawMessage `json:"examples"`
	}
	if err := json.Unmarshal(raw, &s); err != nil || len(s.Examples) == 0 {
		t.Fatalf("schema has no examples (%v)", err)
	}
	return s.Examples
}

func validates(s *jsonschema.Schema, data []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

func TestV2AcceptedBesideV1(t *testing.T) {
	v1Key, v2Key := schemaKey{"OrderPlaced", 1}, schemaKey{"OrderPlaced", 2}
	v2raw := readV2(t)
	schemas := compileBeside(t, map[schemaKey][]byte{v2Key: v2raw})
	v1raw, _ := Schema("OrderPlaced", 1)

	for i, ev := range examplesOf(t, v1raw) {
		if err := validates(schemas[v1Key], ev); err != nil {
			t.Errorf("v1 example %d fails v1 beside v2: %v", i, err)
		}
		if err := Validate("OrderPlaced", 1, ev); err != nil {
			t.Errorf("v1 example %d fails contract.Validate: %v", i, err)
		}
		if validates(schemas[v2Key], ev) == nil {
			t.Errorf("v1 example %d passes v2: the version const does not tell them apart", i)
		}
	}
	for i, ev := range examplesOf(t, v2raw) {
		if err := validates(schemas[v2Key], ev); err != nil {
			t.Errorf("v2 example %d fails v2: %v", i, err)
		}
		// A v1 consumer decodes a v2 event's v1 fields as before: the
		// Go type of v1 reads it, and its data (all but version) passes v1.
		var op OrderPlaced
		if err := json.Unmarshal(ev, &op); err != nil {
			t.Errorf("v2 example %d does not decode as the v1 type: %v", i, err)
		}
		if op.OrderID == "" || len(op.Items) == 0 || op.TotalCents == 0 {
			t.Errorf("v2 example %d decoded as v1 lost v1 fields: %+v", i, op)
		}
		asV1 := bytes.Replace(ev, []byte(`"version": 2`), []byte(`"version": 1`), 1)
		asV1 = bytes.Replace(asV1, []byte(`"version":2`), []byte(`"version":1`), 1)
		if err := Validate("OrderPlaced", 1, asV1); err != nil {
			t.Errorf("v2 example %d with version 1 fails v1: v2 changed a v1 field: %v", i, err)
		}
	}
}

// TestV1ConsumerDeadLettersV2 pins what a v1-only build tells the consumer
// runner about a v2 record: the event is known (Versions lists 1) but not
// at version 2, which is exactly the case pkg/events/consumer/process.go
// (Runner.decode) dead-letters loudly ("version 2 is unknown to this
// build, which knows versions [1]: upgrade the consumer, then replay the
// dead letter") instead of skipping it; an event unknown at every version
// (no Versions) is the one it skips. Validate refuses v2 as unknown.
func TestV1ConsumerDeadLettersV2(t *testing.T) {
	if Known("OrderPlaced", 2) {
		t.Fatal("this build knows OrderPlaced v2: the test's premise (a v1-only build) is gone")
	}
	if got := Versions("OrderPlaced"); !slices.Equal(got, []int{1}) {
		t.Fatalf("Versions(OrderPlaced) = %v, want [1]: a handled event at an unknown version is dead-lettered only while its other versions are known", got)
	}
	if got := Versions("GiftWrapped"); len(got) != 0 {
		t.Fatalf("Versions of an unknown event = %v, want none (skipped, not dead-lettered)", got)
	}
	ex := examplesOf(t, readV2(t))[0]
	if err := Validate("OrderPlaced", 2, ex); err == nil || !isUnknown(err) {
		t.Fatalf("Validate(OrderPlaced v2) = %v, want ErrUnknownEvent", err)
	}
}

func isUnknown(err error) bool { return errors.Is(err, ErrUnknownEvent) }

func TestV2KeepsV1Contract(t *testing.T) {
	var v1, v2 map[string]any
	v1raw, _ := Schema("OrderPlaced", 1)
	if err := json.Unmarshal(v1raw, &v1); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(readV2(t), &v2); err != nil {
		t.Fatal(err)
	}
	for _, p := range compatibleWithV1(v1, v2, "") {
		t.Error(p)
	}
	// The rule bites: dropping a required field, or changing its type, is
	// reported.
	broken := cloneJSON(t, v2)
	broken["required"] = slices.DeleteFunc(slices.Clone(broken["required"].([]any)), func(f any) bool { return f == "currency" })
	broken["properties"].(map[string]any)["totalCents"].(map[string]any)["type"] = "string"
	if got := compatibleWithV1(v1, broken, ""); len(got) != 2 {
		t.Errorf("a v2 without currency and with a string totalCents: %d problems %q, want 2", len(got), got)
	}
}

// compatibleWithV1 lists how v2 breaks v1 consumers under the rule of the
// file comment, at JSON pointer at.
func compatibleWithV1(v1, v2 map[string]any, at string) []string {
	var out []string
	if v1["additionalProperties"] != false && v2["additionalProperties"] == false {
		out = append(out, at+": v2 closes additionalProperties")
	}
	p1, _ := v1["properties"].(map[string]any)
	p2, _ := v2["properties"].(map[string]any)
	req2, _ := v2["required"].([]any)
	req1, _ := v1["required"].([]any)
	for _, r := range req1 {
		name := r.(string)
		if !slices.Contains(req2, any(name)) {
			out = append(out, fmt.Sprintf("%s/%s: required in v1, not in v2", at, name))
			continue
		}
		f1, _ := p1[name].(map[string]any)
		f2, _ := p2[name].(map[string]any)
		if f2 == nil {
			out = append(out, fmt.Sprintf("%s/%s: no v2 schema", at, name))
			continue
		}
		if !reflect.DeepEqual(f1["type"], f2["type"]) {
			out = append(out, fmt.Sprintf("%s/%s: type %v in v1, %v in v2", at, name, f1["type"], f2["type"]))
		}
		if name != "version" && !reflect.DeepEqual(f1["const"], f2["const"]) {
			out = append(out, fmt.Sprintf("%s/%s: const %v in v1, %v in v2", at, name, f1["const"], f2["const"]))
		}
		if f1["type"] == "object" {
			out = append(out, compatibleWithV1(f1, f2, at+"/"+name)...)
		}
		i1, _ := f1["items"].(map[string]any)
		i2, _ := f2["items"].(map[string]any)
		if i1 != nil && i2 != nil {
			out = append(out, compatibleWithV1(i1, i2, at+"/"+name+"/items")...)
		}
	}
	return out
}

func cloneJSON(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
