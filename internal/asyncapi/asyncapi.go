// Package asyncapi builds docs/asyncapi.json, Orderflow's Kafka contract as
// an AsyncAPI 3.0.0 document: one channel per topic of internal/registry
// (each emitted topic and each dlq.<service>), the messages on each (every
// version of every event of pkg/events/contract, its JSON Schema as the
// payload), the record key and headers, and every service's send and
// receive operations. It lives outside pkg/events/contract because it needs
// the registry, which imports contract.
//
// cmd/eventdoc writes the file (go generate ./internal/asyncapi, part of
// make generate); a test fails when it is stale, and another validates it
// against the official AsyncAPI 3.0.0 JSON Schema.
package asyncapi

//go:generate go run ../../cmd/eventdoc -asyncapi ../../docs/asyncapi.json

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/kafka"
)

// Version is the AsyncAPI version the document is written to.
const Version = "3.0.0"

// kafkaBinding is the version of the Kafka bindings the document uses, the
// one AsyncAPI 3.0.0's JSON Schema ships.
const kafkaBinding = "0.5.0"

// headers are the record headers the document describes, as the relay
// (pkg/events/outbox, producer.go) writes them. The test holds the
// document's to outbox.RecordHeaderKeys, so a header added there fails it
// until it is described here.
var headers = []header{
	{"ce_specversion", "CloudEvents spec version (Kafka protocol binding, binary mode).", map[string]any{"const": "1.0"}},
	{"ce_id", "The event's eventId (a UUIDv7 drawn when it was written to the outbox).", map[string]any{"format": "uuid"}},
	{"ce_type", "The event's name, its \"event\" field, e.g. OrderPlaced.", nil},
	{"ce_source", "orderflow/<service>, the service whose outbox wrote it.", map[string]any{"pattern": "^orderflow/[a-z][a-z0-9-]*$"}},
	{"ce_time", "The event's occurredAt, RFC 3339 in UTC, with fractional seconds unless they are zero.", map[string]any{"format": "date-time"}},
	{"content-type", "The media type of the value.", map[string]any{"const": "application/json"}},
	{"x-correlation-id", "The correlation id of the request or event that caused it.", nil},
	{"traceparent", "W3C trace context, when the causing request carried a valid one or tracing is on (then it names the relay's publish span). Absent otherwise.",
		map[string]any{"pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"}},
}

// optionalHeaders are those of headers the relay writes only when the outbox
// row has a value for them; every other one is on every record.
var optionalHeaders = []string{"traceparent"}

// deadLetterHeaderList are the headers the consumer (pkg/events/consumer)
// adds to a record it dead-letters; the rest of the record is unchanged. The
// test holds them to the x-dlq-* keys in that package's code.
var deadLetterHeaderList = []header{
	{"x-dlq-topic", "The topic the record failed in.", nil},
	{"x-dlq-partition", "The partition it was in.", map[string]any{"pattern": "^[0-9]+$"}},
	{"x-dlq-offset", "Its offset there.", map[string]any{"pattern": "^[0-9]+$"}},
	{"x-dlq-error", "The last error (for a version the consumer does not know: the versions it knows).", nil},
	{"x-dlq-attempts", "The attempts the handler spent on it: 0 for poison, dead-lettered before any attempt.", map[string]any{"pattern": "^[0-9]+$"}},
}

// header is one Kafka record header: its key, what it holds, and the
// constraints on its (string) value.
type header struct {
	Name        string
	Description string
	Schema      map[string]any
}

// The document's parts. Structs where the order of fields helps a reader,
// maps (which encoding/json writes sorted by key) for every collection, so
// the output is the same bytes on every run.
type (
	document struct {
		AsyncAPI           string               `json:"asyncapi"`
		Info               info                 `json:"info"`
		DefaultContentType string               `json:"defaultContentType"`
		Servers            map[string]server    `json:"servers"`
		Channels           map[string]channel   `json:"channels"`
		Operations         map[string]operation `json:"operations"`
		Components         components           `json:"components"`
	}
	info struct {
		Title       string `json:"title"`
		Version     string `json:"version"`
		Description string `json:"description"`
	}
	server struct {
		Host        string `json:"host"`
		Protocol    string `json:"protocol"`
		Title       string `json:"title"`
		Description string `json:"description"`
	}
	channel struct {
		Address     string         `json:"address"`
		Title       string         `json:"title"`
		Description string         `json:"description"`
		Messages    map[string]ref `json:"messages"`
		Bindings    map[string]any `json:"bindings"`
	}
	operation struct {
		Action      string         `json:"action"`
		Channel     ref            `json:"channel"`
		Title       string         `json:"title"`
		Description string         `json:"description"`
		Messages    []ref          `json:"messages"`
		Bindings    map[string]any `json:"bindings"`
	}
	message struct {
		Name          string         `json:"name"`
		Title         string         `json:"title"`
		Description   string         `json:"description"`
		ContentType   string         `json:"contentType"`
		Headers       any            `json:"headers"`
		Payload       any            `json:"payload"`
		CorrelationID *ref           `json:"correlationId,omitempty"`
		Bindings      map[string]any `json:"bindings"`
	}
	components struct {
		Schemas        map[string]any            `json:"schemas"`
		Messages       map[string]message        `json:"messages"`
		CorrelationIDs map[string]map[string]any `json:"correlationIds"`
	}
	ref struct {
		Ref string `json:"$ref"`
	}
)

// Names of the shared components.
const (
	recordHeaders     = "RecordHeaders"
	deadLetterHeaders = "DeadLetterHeaders"
	poison            = "Poison"
	correlationID     = "correlationId"
)

// Generate returns docs/asyncapi.json.
func Generate() ([]byte, error) {
	d := document{
		AsyncAPI: Version,
		Info: info{
			Title:   "Orderflow",
			Version: "1",
			Description: "Orderflow's events on Kafka: one topic per emitting service, one dead-letter topic per consuming service. " +
				"Each record's key is the orderId, its value the event as JSON (docs/events.md), its headers CloudEvents binary mode " +
				"plus correlation and tracing (docs/design.md, The contract). email's outbox goes to RabbitMQ, which this document does not describe.\n\n" +
				"Generated by cmd/eventdoc from internal/registry and pkg/events/contract (make generate); do not edit.",
		},
		DefaultContentType: "application/json",
		Servers: map[string]server{
			// devstack.EmbeddedAddr; compose.yaml's EXTERNAL listener.
			"local": {Host: "localhost:9092", Protocol: "kafka", Title: "make run",
				Description: "The embedded broker that make run (cmd/orderflow) starts when KAFKA_BROKERS is unset."},
			"compose": {Host: "localhost:9094", Protocol: "kafka", Title: "make up",
				Description: "Apache Kafka of deploy/compose.yaml, as the host reaches it; containers use kafka:9092."},
		},
		Channels:   map[string]channel{},
		Operations: map[string]operation{},
		Components: components{
			Schemas:  map[string]any{recordHeaders: headerSchema(headers, optionalHeaders), deadLetterHeaders: headerSchema(deadLetterHeaderList, nil)},
			Messages: map[string]message{},
			CorrelationIDs: map[string]map[string]any{correlationID: {
				"description": "The correlation id of the request or event that caused the record, carried from record to record.",
				"location":    "$message.header#/x-correlation-id",
			}},
		},
	}

	// The emitted topics: every version of every event on each.
	channelMsgs := map[string][]string{} // channel -> its message keys, sorted
	for _, topic := range registry.Topics() {
		if strings.HasPrefix(topic, "dlq.") {
			continue
		}
		emitter, ok := emitterOf(topic)
		if !ok {
			return nil, fmt.Errorf("asyncapi: topic %s has no emitter in the registry", topic)
		}
		names := contract.EventsOn(topic)
		if len(names) == 0 {
			return nil, fmt.Errorf("asyncapi: no event is emitted on topic %s", topic)
		}
		msgs := map[string]ref{}
		for _, name := range names {
			for _, v := range contract.Versions(name) {
				key, err := addEvent(&d.Components, name, v, topic, emitter)
				if err != nil {
					return nil, err
				}
				msgs[key] = ref{"#/components/messages/" + key}
				channelMsgs[topic] = append(channelMsgs[topic], key)
			}
		}
		d.Channels[topic] = channel{
			Address: topic, Title: topic,
			Description: fmt.Sprintf("The events of the %s service, written by its outbox relay in commit order per order: %s.", emitter, strings.Join(names, ", ")),
			Messages:    msgs,
			Bindings:    channelBinding(topic),
		}
	}

	// A dead-letter topic holds the records of the topics its service
	// consumes, unchanged, plus the poison records that never parsed.
	d.Components.Messages[poison] = message{
		Name:  poison,
		Title: "Poison record, dead-lettered",
		Description: "A record the consumer dead-lettered before any attempt (x-dlq-attempts 0): not JSON, without the envelope, failing its schema, " +
			"or a version the consumer does not know. Key, value and headers are as they came, whatever they were.",
		ContentType: "application/octet-stream",
		Headers:     ref{"#/components/schemas/" + deadLetterHeaders},
		Payload:     map[string]any{"description": "The record's value as it came: any bytes."},
		Bindings:    map[string]any{"kafka": map[string]any{"key": map[string]any{"type": "string", "description": "The record's key as it came."}, "bindingVersion": kafkaBinding}},
	}
	for _, s := range registry.Services {
		dlq := s.DLQ()
		if dlq == "" {
			continue
		}
		msgs := map[string]ref{poison: {"#/components/messages/" + poison}}
		channelMsgs[dlq] = []string{poison}
		for _, topic := range s.Consumes {
			for _, key := range channelMsgs[topic] {
				dead := key + ".deadLetter"
				msgs[key] = ref{"#/components/messages/" + dead}
				channelMsgs[dlq] = append(channelMsgs[dlq], key)
			}
		}
		d.Channels[dlq] = channel{
			Address: dlq, Title: dlq,
			Description: fmt.Sprintf("Dead letters of the %s consumer: records of %s it could not handle, each unchanged (key, value, headers, timestamp) "+
				"with the x-dlq-* headers added. orderflowctl dlq replay sends one back.", s.Name, strings.Join(s.Consumes, ", ")),
			Messages: msgs,
			Bindings: channelBinding(dlq),
		}
	}
	for _, keys := range channelMsgs {
		slices.Sort(keys)
	}

	// Operations: what each service sends and receives.
	for _, s := range registry.Services {
		relay := map[string]any{"kafka": map[string]any{"clientId": constString("orderflow-" + s.Name + "-relay"), "bindingVersion": kafkaBinding}}
		group := "orderflow-" + s.Name
		consumer := map[string]any{"kafka": map[string]any{"groupId": constString(group), "clientId": constString(group + "-consumer"), "bindingVersion": kafkaBinding}}
		for _, topic := range s.Emits {
			d.Operations[s.Name+".send."+topic] = operation{
				Action: "send", Channel: ref{"#/channels/" + topic}, Title: s.Name + " sends to " + topic,
				Description: fmt.Sprintf("The %s outbox relay publishes each committed outbox row (idempotent producer, acks=all, key = orderId).", s.Name),
				Messages:    channelRefs(topic, channelMsgs[topic]), Bindings: relay,
			}
		}
		for _, topic := range s.Consumes {
			d.Operations[s.Name+".receive."+topic] = operation{
				Action: "receive", Channel: ref{"#/channels/" + topic}, Title: s.Name + " receives from " + topic,
				Description: fmt.Sprintf("%s consumes %s in consumer group %s, each partition in offset order; an event it has no use for is skipped.", s.Name, topic, group),
				Messages:    channelRefs(topic, channelMsgs[topic]), Bindings: consumer,
			}
		}
		if dlq := s.DLQ(); dlq != "" {
			d.Operations[s.Name+".send."+dlq] = operation{
				Action: "send", Channel: ref{"#/channels/" + dlq}, Title: s.Name + " dead-letters to " + dlq,
				Description: fmt.Sprintf("The %s consumer dead-letters poison at once, and a record whose handler kept failing after its retries; "+
					"the partition moves on once the dead letter is acknowledged.", s.Name),
				Messages: channelRefs(dlq, channelMsgs[dlq]), Bindings: consumer,
			}
		}
	}

	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // descriptions keep their < > & as written
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// addEvent adds event name at version v to the components: its payload
// schema, its message, and its message as a dead letter. It returns the
// message key, "<name>.v<version>".
func addEvent(c *components, name string, v int, topic, emitter string) (string, error) {
	raw, ok := contract.Schema(name, v)
	if !ok {
		return "", fmt.Errorf("asyncapi: no schema for %s v%d", name, v)
	}
	payload, id, err := payloadSchema(raw)
	if err != nil {
		return "", fmt.Errorf("asyncapi: %s v%d: %w", name, v, err)
	}
	key := fmt.Sprintf("%s.v%d", name, v)
	c.Schemas[key] = payload
	desc, _ := payload["description"].(string)
	desc += fmt.Sprintf("\n\nSchema: pkg/events/contract/schemas/v%d/%s.json ($id %s).", v, name, id)
	own := map[string]any{"ce_type": constString(name), "ce_source": constString("orderflow/" + emitter)}
	c.Messages[key] = message{
		Name: name, Title: fmt.Sprintf("%s v%d", name, v), Description: desc,
		ContentType:   "application/json",
		Headers:       allOf(ref{"#/components/schemas/" + recordHeaders}, map[string]any{"type": "object", "properties": own}),
		Payload:       ref{"#/components/schemas/" + key},
		CorrelationID: &ref{"#/components/correlationIds/" + correlationID},
		Bindings:      keyBinding(),
	}
	dead := merge(own, map[string]any{"x-dlq-topic": constString(topic)})
	c.Messages[key+".deadLetter"] = message{
		Name: name, Title: fmt.Sprintf("%s v%d, dead-lettered", name, v),
		Description: fmt.Sprintf("%s v%d from %s, dead-lettered after its handler kept failing (it passed its schema): "+
			"the record unchanged, with the x-dlq-* headers added.", name, v, topic),
		ContentType: "application/json",
		Headers: allOf(ref{"#/components/schemas/" + recordHeaders}, ref{"#/components/schemas/" + deadLetterHeaders},
			map[string]any{"type": "object", "properties": dead}),
		Payload:       ref{"#/components/schemas/" + key},
		CorrelationID: &ref{"#/components/correlationIds/" + correlationID},
		Bindings:      keyBinding(),
	}
	return key, nil
}

// payloadSchema turns an event's JSON Schema (draft 2020-12) into the payload
// schema of its message, and returns its $id.
//
// It is written as an AsyncAPI Schema Object (no schemaFormat), not as a
// Multi Format Schema Object of format draft-07: the Schema Object is a
// superset of JSON Schema draft 07 that every AsyncAPI tool reads
// (renderers, code generators and the parser take it as the default, while
// the multi-format wrapper is still handled unevenly), and the official
// AsyncAPI JSON Schema checks it (draft-07's metaschema plus AsyncAPI's
// additions), so the validity test covers the payloads too. The schemas'
// own dialect, 2020-12, is no format AsyncAPI lists. Each keyword they use
// means the same in draft 07 and 2020-12; checkDraft07 holds them to that.
// $schema (2020-12, which would contradict the format and makes ajv-based
// tools look for a metaschema) and $id (which would make tools register the
// same id once per message using it) are dropped; the $id goes into the
// message's description.
func payloadSchema(raw []byte) (schema map[string]any, id string, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // bounds stay as written: 10000000, not 1e+07
	if err := dec.Decode(&schema); err != nil {
		return nil, "", err
	}
	id, _ = schema["$id"].(string)
	delete(schema, "$schema")
	delete(schema, "$id")
	if err := checkDraft07(schema, ""); err != nil {
		return nil, "", err
	}
	return schema, id, nil
}

// sameInDraft07 are the keywords that mean the same in draft 07 as in
// 2020-12 and that the event schemas use. Another (prefixItems, $defs,
// unevaluatedProperties, dependentRequired...) either has no meaning in
// draft 07 or another one, and needs thought before it goes in.
var sameInDraft07 = []string{
	"title", "description", "type", "const", "enum", "format", "pattern",
	"minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems",
	"items", "properties", "required", "additionalProperties", "examples",
}

func checkDraft07(s map[string]any, at string) error {
	for k, v := range s {
		if !slices.Contains(sameInDraft07, k) {
			return fmt.Errorf("schema keyword %q at %q: not known to mean the same in JSON Schema draft 07 (internal/asyncapi)", k, "#"+at)
		}
		switch k {
		case "properties":
			props, _ := v.(map[string]any)
			for name, p := range props {
				if err := sub(p, at+"/properties/"+name); err != nil {
					return err
				}
			}
		case "items":
			// An object in both; an array of schemas in draft 07 is
			// 2020-12's prefixItems.
			if _, ok := v.(map[string]any); !ok {
				return fmt.Errorf("schema keyword \"items\" at %q: not a schema", "#"+at)
			}
			if err := sub(v, at+"/items"); err != nil {
				return err
			}
		case "additionalProperties":
			if _, ok := v.(bool); !ok {
				if err := sub(v, at+"/additionalProperties"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func sub(v any, at string) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("schema at %q: not an object", "#"+at)
	}
	return checkDraft07(m, at)
}

// emitterOf returns the service that emits to topic.
func emitterOf(topic string) (string, bool) {
	for _, s := range registry.Services {
		if slices.Contains(s.Emits, topic) {
			return s.Name, true
		}
	}
	return "", false
}

// headerSchema is the schema of a record's headers: an object with a string
// property per header, each required unless optional. Other headers are
// allowed (a record from another producer may carry more).
func headerSchema(hs []header, optional []string) map[string]any {
	props := map[string]any{}
	var required []string
	for _, h := range hs {
		p := merge(map[string]any{"type": "string", "description": h.Description}, h.Schema)
		props[h.Name] = p
		if !slices.Contains(optional, h.Name) {
			required = append(required, h.Name)
		}
	}
	return map[string]any{"type": "object", "properties": props, "required": required}
}

// channelBinding is a topic's Kafka binding: kafka.Partitions partitions,
// as every Orderflow topic has.
func channelBinding(topic string) map[string]any {
	return map[string]any{"kafka": map[string]any{"topic": topic, "partitions": kafka.Partitions, "bindingVersion": kafkaBinding}}
}

// keyBinding is an event record's Kafka binding: its key is the orderId,
// which keeps one order's events on one topic in one partition.
func keyBinding() map[string]any {
	return map[string]any{"kafka": map[string]any{
		"key":            map[string]any{"type": "string", "format": "uuid", "description": "The orderId, as a string; Kafka's murmur2 of it picks the partition."},
		"bindingVersion": kafkaBinding,
	}}
}

func channelRefs(channel string, keys []string) []ref {
	refs := make([]ref, len(keys))
	for i, k := range keys {
		refs[i] = ref{"#/channels/" + channel + "/messages/" + k}
	}
	return refs
}

func constString(s string) map[string]any { return map[string]any{"type": "string", "const": s} }

func allOf(schemas ...any) map[string]any {
	return map[string]any{"type": "object", "allOf": schemas}
}

// merge returns the union of ms, later ones winning.
func merge(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
