package asyncapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/orderflow/orderflow/internal/asyncapi"
	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/outbox"
)

const docPath = "../../docs/asyncapi.json"

// asyncapiSchema is the official JSON Schema of AsyncAPI 3.0.0, vendored
// from the npm package @asyncapi/specs 6.11.1 (`npm pack @asyncapi/specs@6.11.1`,
// file package/schemas/3.0.0.json, sha256 d4571a42...f95e626), Apache-2.0:
// its LICENSE and NOTICE are beside it. It is the bundled variant: every
// schema it $refs (definitions, bindings) is embedded in it under its $id,
// except JSON Schema draft 07's metaschema, which jsonschema/v6 ships.
const asyncapiSchema = "testdata/asyncapi-3.0.0.json"

func TestDocumentUpToDate(t *testing.T) {
	want, err := asyncapi.Generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("%v: docs/asyncapi.json is stale: run make generate", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("docs/asyncapi.json is stale: run make generate")
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	a, err := asyncapi.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, err := asyncapi.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatal("two runs of Generate differ")
		}
	}
}

// offline is the compiler's loader: the vendored schema must be complete, so
// the test never reaches for the network (which it does not have).
type offline struct{}

func (offline) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s is not vendored, and the test fetches nothing", url)
}

func compileAsyncAPI(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(asyncapiSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := doc.(map[string]any)["$id"].(string)
	if id != "http://asyncapi.com/definitions/3.0.0/asyncapi.json" {
		t.Fatalf("%s: $id %q, not AsyncAPI 3.0.0's", asyncapiSchema, id)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(offline{})
	c.AssertFormat() // uri, uri-reference...: part of what a valid document is
	if err := c.AddResource(id, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(id)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func readDoc(t *testing.T) any {
	t.Helper()
	raw, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestDocumentIsValidAsyncAPI(t *testing.T) {
	if err := compileAsyncAPI(t).Validate(readDoc(t)); err != nil {
		t.Fatalf("docs/asyncapi.json is not valid AsyncAPI %s: %v", asyncapi.Version, err)
	}
}

// mutations break a copy of the document in ways the AsyncAPI schema must
// refuse, so TestDocumentIsValidAsyncAPI is known to look at what matters.
var invalid = map[string]func(d map[string]any){
	"version 2.6.0": func(d map[string]any) { d["asyncapi"] = "2.6.0" },
	"no info":       func(d map[string]any) { delete(d, "info") },
	"action publish (2.x)": func(d map[string]any) {
		obj(d, "operations", "orders.send.orders")["action"] = "publish"
	},
	"operation without channel": func(d map[string]any) {
		delete(obj(d, "operations", "orders.send.orders"), "channel")
	},
	"partitions as a string": func(d map[string]any) {
		obj(d, "channels", "orders", "bindings", "kafka")["partitions"] = "12"
	},
	"unknown kafka binding field": func(d map[string]any) {
		obj(d, "channels", "orders", "bindings", "kafka")["retention"] = "7d"
	},
	"payload type not a type": func(d map[string]any) {
		obj(d, "components", "schemas", "OrderPlaced.v1")["type"] = "record"
	},
	"server without protocol": func(d map[string]any) { delete(obj(d, "servers", "local"), "protocol") },
	"address a number":        func(d map[string]any) { obj(d, "channels", "orders")["address"] = 7 },
	"header schema not a schema": func(d map[string]any) {
		obj(d, "components", "messages", "OrderPlaced.v1")["headers"] = "ce_id"
	},
}

func TestValidationCatchesBrokenDocuments(t *testing.T) {
	sch := compileAsyncAPI(t)
	for name, mutate := range invalid {
		t.Run(name, func(t *testing.T) {
			d := readDoc(t).(map[string]any)
			mutate(d)
			if err := sch.Validate(d); err == nil {
				t.Error("the broken document passed")
			}
		})
	}
}

// obj walks d by keys to an object.
func obj(d map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		d = d[k].(map[string]any)
	}
	return d
}

// resolve follows a local $ref ("#/a/b") in d.
func resolve(d map[string]any, ref any) (map[string]any, error) {
	r, _ := ref.(map[string]any)["$ref"].(string)
	if !strings.HasPrefix(r, "#/") {
		return nil, fmt.Errorf("not a local $ref: %v", ref)
	}
	var at any = d
	for _, tok := range strings.Split(r[2:], "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := at.(map[string]any)
		if !ok || m[tok] == nil {
			return nil, fmt.Errorf("$ref %s resolves to nothing", r)
		}
		at = m[tok]
	}
	m, ok := at.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("$ref %s is not an object", r)
	}
	return m, nil
}

// schemaFiles lists the event schemas as files, not through the generator's
// own calls into contract: name and version of each.
func schemaFiles(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob("../../pkg/events/contract/schemas/v*/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no schemas: %v", err)
	}
	files := map[string]string{} // "<name>.v<version>" -> path
	for _, p := range paths {
		files[strings.TrimSuffix(filepath.Base(p), ".json")+"."+filepath.Base(filepath.Dir(p))] = p
	}
	return files
}

// dlqHeaderKeys returns the x-dlq-* header keys pkg/events/consumer's code
// writes: the string literals of its non-test files that start so.
func dlqHeaderKeys(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	paths, _ := filepath.Glob("../../pkg/events/consumer/*.go")
	var keys []string
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, "x-dlq-") && !slices.Contains(keys, s) {
					keys = append(keys, s)
				}
			}
			return true
		})
	}
	if len(keys) == 0 {
		t.Fatal("found no x-dlq-* header in pkg/events/consumer")
	}
	slices.Sort(keys)
	return keys
}

// facts is what the code says the document must hold.
type facts struct {
	schemas      map[string]string // "<name>.v<version>" -> schema file
	always, opt  []string          // the relay's headers
	deadLetter   []string          // the consumer's x-dlq-* headers
	topics       []string
	services     []registry.Service
	partitionsOf int
}

func codeFacts(t *testing.T) facts {
	always, opt := outbox.RecordHeaderKeys()
	return facts{schemaFiles(t), always, opt, dlqHeaderKeys(t), registry.Topics(), registry.Services, kafka.Partitions}
}

func TestDocumentAgreesWithCode(t *testing.T) {
	for _, p := range disagreements(readDoc(t).(map[string]any), codeFacts(t)) {
		t.Error(p)
	}
}

// disagreements lists where doc departs from the code's facts.
func disagreements(doc map[string]any, f facts) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	// Every $ref points at something in the document.
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["$ref"].(string); ok {
				if _, err := resolve(doc, v); err != nil {
					bad("%v", err)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)

	channels, _ := doc["channels"].(map[string]any)
	components, _ := doc["components"].(map[string]any)
	compSchemas, _ := components["schemas"].(map[string]any)

	// Every topic is a channel, and no channel is not a topic.
	for _, topic := range f.topics {
		ch, ok := channels[topic].(map[string]any)
		if !ok {
			bad("topic %s has no channel", topic)
			continue
		}
		if ch["address"] != topic {
			bad("channel %s: address %v", topic, ch["address"])
		}
		k, _ := ch["bindings"].(map[string]any)["kafka"].(map[string]any)
		if k["topic"] != topic || fmt.Sprint(k["partitions"]) != strconv.Itoa(f.partitionsOf) {
			bad("channel %s: kafka binding %v, want topic %s and %d partitions", topic, k, topic, f.partitionsOf)
		}
	}
	for name := range channels {
		if !slices.Contains(f.topics, name) {
			bad("channel %s is no topic of the registry", name)
		}
	}

	// Every event version is a message on its topic, with its schema as
	// payload; an emitted topic carries nothing else.
	want := map[string][]string{} // channel -> message keys
	for key, path := range f.schemas {
		name := key[:strings.Index(key, ".")]
		topic, ok := contract.TopicOf(name)
		if !ok {
			bad("event %s has no topic", name)
			continue
		}
		want[topic] = append(want[topic], key)
		schema, err := os.ReadFile(path)
		if err != nil {
			bad("%v", err)
			continue
		}
		var fromFile map[string]any
		dec := json.NewDecoder(bytes.NewReader(schema))
		dec.UseNumber()
		if err := dec.Decode(&fromFile); err != nil {
			bad("%s: %v", path, err)
			continue
		}
		delete(fromFile, "$schema")
		delete(fromFile, "$id")
		if got := compSchemas[key]; !reflect.DeepEqual(normal(got), normal(fromFile)) {
			bad("components.schemas.%s is not %s (less $schema and $id)", key, path)
		}
	}
	for _, s := range f.services {
		if dlq := s.DLQ(); dlq != "" {
			want[dlq] = []string{"Poison"}
			for _, topic := range s.Consumes {
				want[dlq] = append(want[dlq], want[topic]...)
			}
		}
	}
	for topic, keys := range want {
		slices.Sort(keys)
		ch, _ := channels[topic].(map[string]any)
		msgs, _ := ch["messages"].(map[string]any)
		if got := sortedKeys(msgs); !slices.Equal(got, keys) {
			bad("channel %s: messages %v, want %v", topic, got, keys)
		}
		for _, key := range keys {
			if msgs[key] == nil {
				continue
			}
			m, err := resolve(doc, msgs[key])
			if err != nil {
				bad("channel %s message %s: %v", topic, key, err)
				continue
			}
			if key == "Poison" {
				continue
			}
			name := key[:strings.Index(key, ".")]
			if m["name"] != name {
				bad("channel %s message %s: name %v", topic, key, m["name"])
			}
			if p, _ := m["payload"].(map[string]any); p["$ref"] != "#/components/schemas/"+key {
				bad("channel %s message %s: payload %v, want its event's schema", topic, key, p)
			}
			refs, consts := headerParts(m)
			wantRefs := []string{"#/components/schemas/RecordHeaders"}
			if strings.HasPrefix(topic, "dlq.") {
				wantRefs = append(wantRefs, "#/components/schemas/DeadLetterHeaders")
			}
			if !slices.Equal(refs, wantRefs) {
				bad("channel %s message %s: headers are %v, want %v", topic, key, refs, wantRefs)
			}
			if consts["ce_type"] != name {
				bad("channel %s message %s: ce_type %v", topic, key, consts["ce_type"])
			}
		}
	}

	// The headers are those the relay and the consumer write.
	rh, _ := compSchemas["RecordHeaders"].(map[string]any)
	if got, want := sortedKeys(rh["properties"]), sorted(append(slices.Clone(f.always), f.opt...)); !slices.Equal(got, want) {
		bad("RecordHeaders: %v, the relay writes %v", got, want)
	}
	if got, want := sorted(strings2(rh["required"])), sorted(f.always); !slices.Equal(got, want) {
		bad("RecordHeaders: required %v, the relay writes %v on every record", got, want)
	}
	dh, _ := compSchemas["DeadLetterHeaders"].(map[string]any)
	if got := sortedKeys(dh["properties"]); !slices.Equal(got, f.deadLetter) {
		bad("DeadLetterHeaders: %v, the consumer writes %v", got, f.deadLetter)
	}

	// Each service's operations: send on what it emits, receive on what it
	// consumes, send on its dead-letter topic; nothing else. Each carries
	// every message of its channel.
	type op struct{ service, action, channel string }
	var wantOps []op
	for _, s := range f.services {
		for _, t := range s.Emits {
			wantOps = append(wantOps, op{s.Name, "send", t})
		}
		for _, t := range s.Consumes {
			wantOps = append(wantOps, op{s.Name, "receive", t})
		}
		if d := s.DLQ(); d != "" {
			wantOps = append(wantOps, op{s.Name, "send", d})
		}
	}
	var gotOps []op
	ops, _ := doc["operations"].(map[string]any)
	for key, o := range ops {
		o, _ := o.(map[string]any)
		chRef, _ := o["channel"].(map[string]any)["$ref"].(string)
		channel := strings.TrimPrefix(chRef, "#/channels/")
		service, _, _ := strings.Cut(key, ".")
		action, _ := o["action"].(string)
		gotOps = append(gotOps, op{service, action, channel})
		var got []string
		for _, m := range o["messages"].([]any) {
			r, _ := m.(map[string]any)["$ref"].(string)
			got = append(got, r)
		}
		var wantMsgs []string
		for _, k := range want[channel] {
			wantMsgs = append(wantMsgs, chRef+"/messages/"+k)
		}
		if !slices.Equal(sorted(got), sorted(wantMsgs)) {
			bad("operation %s: messages %v, want %v", key, got, wantMsgs)
		}
	}
	cmpOp := func(a, b op) int { return strings.Compare(a.service+a.action+a.channel, b.service+b.action+b.channel) }
	slices.SortFunc(wantOps, cmpOp)
	slices.SortFunc(gotOps, cmpOp)
	if !slices.Equal(gotOps, wantOps) {
		bad("operations %v, want %v", gotOps, wantOps)
	}
	return out
}

// headerParts returns the $refs of a message's headers allOf and the const
// values it pins.
func headerParts(m map[string]any) (refs []string, consts map[string]any) {
	consts = map[string]any{}
	h, _ := m["headers"].(map[string]any)
	all, _ := h["allOf"].([]any)
	for _, part := range all {
		part, _ := part.(map[string]any)
		if r, ok := part["$ref"].(string); ok {
			refs = append(refs, r)
		}
		props, _ := part["properties"].(map[string]any)
		for k, p := range props {
			consts[k] = p.(map[string]any)["const"]
		}
	}
	return refs, consts
}

// normal re-encodes v, so values decoded by different decoders compare.
func normal(v any) any {
	b, _ := json.Marshal(v)
	var out any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	_ = dec.Decode(&out)
	return out
}

func sortedKeys(v any) []string {
	m, _ := v.(map[string]any)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func strings2(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// drift breaks the document or the code's facts the way a change to one
// without the other would; disagreements must name each.
var drift = map[string]func(d map[string]any, f *facts){
	"a channel deleted":   func(d map[string]any, _ *facts) { delete(obj(d, "channels"), "payments") },
	"a dlq channel added": func(_ map[string]any, f *facts) { f.topics = append(f.topics, "dlq.audit") },
	"a message dropped": func(d map[string]any, _ *facts) {
		delete(obj(d, "channels", "warehouse", "messages"), "PickCancelled.v1")
	},
	"a new event version": func(_ map[string]any, f *facts) { f.schemas["OrderPlaced.v2"] = f.schemas["OrderPlaced.v1"] },
	"a payload changed": func(d map[string]any, _ *facts) {
		obj(d, "components", "schemas", "PointsAwarded.v1")["additionalProperties"] = false
	},
	"a header renamed in the relay": func(_ map[string]any, f *facts) { f.always[1] = "ce_eventid" },
	"the relay writes a new header": func(_ map[string]any, f *facts) { f.opt = append(f.opt, "tracestate") },
	"traceparent on every record":   func(_ map[string]any, f *facts) { f.always, f.opt = append(f.always, f.opt...), nil },
	"a dlq header added":            func(_ map[string]any, f *facts) { f.deadLetter = sorted(append(f.deadLetter, "x-dlq-at")) },
	"an operation deleted":          func(d map[string]any, _ *facts) { delete(obj(d, "operations"), "loyalty.receive.orders") },
	"a service consumes more": func(_ map[string]any, f *facts) {
		f.services = slices.Clone(f.services)
		f.services[3].Consumes = append(slices.Clone(f.services[3].Consumes), contract.TopicWarehouse)
	},
	"an operation on the wrong channel": func(d map[string]any, _ *facts) {
		obj(d, "operations", "orders.send.orders")["channel"] = map[string]any{"$ref": "#/channels/payments"}
	},
	"partitions changed": func(_ map[string]any, f *facts) { f.partitionsOf = 6 },
	"a dangling $ref": func(d map[string]any, _ *facts) {
		delete(obj(d, "components", "correlationIds"), "correlationId")
	},
}

func TestAgreementCatchesDrift(t *testing.T) {
	for name, mutate := range drift {
		t.Run(name, func(t *testing.T) {
			d, f := readDoc(t).(map[string]any), codeFacts(t)
			f.always = slices.Clone(f.always)
			mutate(d, &f)
			if p := disagreements(d, f); len(p) == 0 {
				t.Error("no disagreement found")
			} else {
				t.Log(p[0])
			}
		})
	}
}

// TestPayloadsMeanTheSameInDraft07 reads each payload as JSON Schema draft 07,
// the dialect AsyncAPI's Schema Object extends, and checks it judges events
// as contract.Validate (2020-12) does: the schema's examples and each
// event's Sample pass, and each with a required field removed or its
// "event" changed fails both.
func TestPayloadsMeanTheSameInDraft07(t *testing.T) {
	doc := readDoc(t).(map[string]any)
	for key := range schemaFiles(t) {
		name, vs, _ := strings.Cut(key, ".v")
		v, _ := strconv.Atoi(vs)
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft7)
		c.AssertFormat()
		c.UseLoader(offline{})
		if err := c.AddResource("mem:///"+key, obj(doc, "components", "schemas", key)); err != nil {
			t.Fatal(err)
		}
		sch, err := c.Compile("mem:///" + key)
		if err != nil {
			t.Fatalf("%s as draft 07: %v", key, err)
		}
		var events []map[string]any
		examples, _ := obj(doc, "components", "schemas", key)["examples"].([]any)
		for _, ex := range examples {
			events = append(events, normal(ex).(map[string]any))
		}
		if ev := contract.Sample(name, "0b9f6a52-4c1e-4d8a-9a57-3f2c8e1d7b64"); ev != nil && v == 1 {
			m := ev.Meta()
			m.Event, m.Version, m.EventID = name, v, "01970000-0000-7000-8000-0000000000aa"
			b, _ := json.Marshal(ev)
			var e map[string]any
			_ = json.Unmarshal(b, &e)
			events = append(events, normal(e).(map[string]any))
		}
		if len(events) == 0 {
			t.Fatalf("%s: no event to check", key)
		}
		judge := func(e map[string]any) (draft07, contract2020 bool) {
			b, _ := json.Marshal(e)
			inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			return sch.Validate(inst) == nil, contract.Validate(name, v, b) == nil
		}
		for i, e := range events {
			if d7, c20 := judge(e); !d7 || !c20 {
				t.Errorf("%s event %d: draft 07 accepts %v, contract %v; want both", key, i, d7, c20)
			}
			cases := map[string]map[string]any{"event renamed": with(e, "event", "Nope")}
			required, _ := obj(doc, "components", "schemas", key)["required"].([]any)
			for _, r := range required {
				cases["no "+r.(string)] = without(e, r.(string))
			}
			for what, bad := range cases {
				if d7, c20 := judge(bad); d7 || c20 {
					t.Errorf("%s event %d, %s: draft 07 accepts %v, contract %v; want neither", key, i, what, d7, c20)
				}
			}
		}
	}
}

func with(e map[string]any, k string, v any) map[string]any {
	out := normal(e).(map[string]any)
	out[k] = v
	return out
}

func without(e map[string]any, k string) map[string]any {
	out := normal(e).(map[string]any)
	delete(out, k)
	return out
}

// Generate refuses a schema keyword it cannot carry over unchanged.
func TestGenerateRefusesUnknownKeywords(t *testing.T) {
	_, _, err := asyncapi.PayloadSchema([]byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
		"properties":{"pair":{"type":"array","prefixItems":[{"type":"string"}]}}}`))
	if err == nil || !strings.Contains(err.Error(), "prefixItems") {
		t.Fatalf("got %v, want an error naming prefixItems", err)
	}
	_, _, err = asyncapi.PayloadSchema([]byte(`{"type":"array","items":[{"type":"string"}]}`))
	if err == nil {
		t.Fatal("an items array (a tuple in draft 07) passed")
	}
	if _, _, err := asyncapi.PayloadSchema([]byte(`{"type":"object","properties":{"a":{"type":"string","minLength":1}}}`)); err != nil {
		t.Fatal(err)
	}
}
