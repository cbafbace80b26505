package servicetest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/pkg/httpserver"
)

// tinyDoc documents tinyRoutes: a widget by id, a widget's rename, and the
// endpoints every router has.
const tinyDoc = `{
  "openapi": "3.1.0",
  "info": {"title": "tiny", "version": "1"},
  "servers": [{"url": "http://localhost:8081"}],
  "paths": {
    "/widgets/{id}": {
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
      "get": {
        "responses": {
          "200": {"description": "the widget", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Widget"}}}},
          "404": {"$ref": "#/components/responses/Problem"}
        }
      },
      "put": {
        "requestBody": {"required": true, "content": {"application/json": {
          "schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}, "additionalProperties": false},
          "examples": {"rename": {"value": {"name": "sprocket"}}}
        }}},
        "responses": {
          "200": {"description": "the widget", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Widget"}}}},
          "422": {"$ref": "#/components/responses/Problem"}
        }
      }
    },
    "/healthz": {"get": {"responses": {"200": {"description": "up", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    "/readyz": {"get": {"responses": {
      "200": {"description": "ready", "content": {"application/json": {"schema": {"type": "object"}}}},
      "503": {"description": "not ready", "content": {"application/json": {"schema": {"type": "object"}}}}
    }}},
    "/metrics": {"get": {"responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
  },
  "components": {
    "schemas": {
      "Widget": {"type": "object", "required": ["id", "name"], "additionalProperties": false,
        "properties": {"id": {"type": "string", "format": "uuid"}, "name": {"type": "string"}}},
      "Problem": {"type": "object", "required": ["title", "status"], "properties": {"title": {"type": "string"}, "status": {"type": "integer"}}}
    },
    "responses": {
      "Problem": {"description": "refused", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    }
  }
}`

// tiny is the service under test; its fields break it on purpose.
type tiny struct {
	extraField bool // the widget gains a field the schema does not allow
	status     int  // the widget is answered with this status instead of 200
}

func (s *tiny) routes(r chi.Router) {
	widget := func(w http.ResponseWriter, r *http.Request, name string) {
		id, err := uuid.Parse(chi.URLParam(r, "id"))
		if err != nil {
			httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusNotFound})
			return
		}
		out := map[string]any{"id": id, "name": name}
		if s.extraField {
			out["colour"] = "red"
		}
		status := http.StatusOK
		if s.status != 0 {
			status = s.status
		}
		httpserver.WriteJSON(w, status, out)
	}
	r.Get("/widgets/{id}", func(w http.ResponseWriter, r *http.Request) { widget(w, r, "gear") })
	r.Put("/widgets/{id}", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Name string }
		if json.NewDecoder(r.Body).Decode(&in) != nil || in.Name == "" {
			httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusUnprocessableEntity})
			return
		}
		widget(w, r, in.Name)
	})
}

// tinyTest is a passing check of the tiny service; each subtest breaks
// one thing.
func tinyTest(t *testing.T, s *tiny, doc string) OpenAPITest {
	r := httpserver.NewRouter(prometheus.NewRegistry())
	s.routes(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	id := uuid.NewString()
	return OpenAPITest{
		Service:  "payments", // any registered service: the tiny one borrows its port
		Document: []byte(doc),
		Routes:   s.routes,
		BaseURL:  srv.URL,
		Cases: []OpenAPICase{
			{Method: "GET", Target: "/widgets/" + id, Status: 200},
			{Method: "GET", Target: "/widgets/not-a-uuid", Status: 404},
			{Method: "PUT", Target: "/widgets/" + id, Example: "rename", Status: 200},
			{Method: "PUT", Target: "/widgets/" + id, Body: `{"name":""}`, Status: 422},
		},
		Unprovoked: map[string]string{},
	}
}

// edit returns tinyDoc changed by f.
func edit(t *testing.T, f func(doc map[string]any)) string {
	var doc map[string]any
	if err := json.Unmarshal([]byte(tinyDoc), &doc); err != nil {
		t.Fatal(err)
	}
	f(doc)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func widgetPath(doc map[string]any) map[string]any {
	return doc["paths"].(map[string]any)["/widgets/{id}"].(map[string]any)
}

// TestOpenAPICheckBites breaks the tiny service or its document in each
// way the checker must notice, and asserts the error that names it.
func TestOpenAPICheckBites(t *testing.T) {
	t.Parallel()
	t.Run("passes when document and service agree", func(t *testing.T) {
		if errs := tinyTest(t, &tiny{}, tinyDoc).Check(); len(errs) > 0 {
			t.Fatalf("errors: %v", errs)
		}
	})
	for _, tc := range []struct {
		name string
		test func(t *testing.T) OpenAPITest
		want string // in one of the errors
	}{
		{"not OpenAPI 3.1", func(t *testing.T) OpenAPITest {
			return tinyTest(t, &tiny{}, edit(t, func(d map[string]any) { delete(d, "info") }))
		}, "not valid OpenAPI 3.1"},
		{"a server other than the registry's port", func(t *testing.T) OpenAPITest {
			return tinyTest(t, &tiny{}, strings.Replace(tinyDoc, "localhost:8081", "localhost:9999", 1))
		}, "want http://localhost:8081 (the registry's port)"},
		{"a route missing from the document", func(t *testing.T) OpenAPITest {
			return tinyTest(t, &tiny{}, edit(t, func(d map[string]any) { delete(widgetPath(d), "put") }))
		}, "route PUT /widgets/{id} is served but not documented"},
		{"a path the service does not serve", func(t *testing.T) OpenAPITest {
			return tinyTest(t, &tiny{}, edit(t, func(d map[string]any) {
				d["paths"].(map[string]any)["/gadgets"] = map[string]any{"get": map[string]any{
					"responses": map[string]any{"200": map[string]any{"description": "a gadget"}}}}
			}))
		}, "documented GET /gadgets is not served"},
		{"a status the operation does not list", func(t *testing.T) OpenAPITest {
			return tinyTest(t, &tiny{status: http.StatusAccepted}, tinyDoc)
		}, "status 202 is not documented for GET /widgets/{id}"},
		{"a body that breaks the schema", func(t *testing.T) OpenAPITest {
			return tinyTest(t, &tiny{extraField: true}, tinyDoc)
		}, "breaks the schema"},
		{"a documented status never answered", func(t *testing.T) OpenAPITest {
			return tinyTest(t, &tiny{}, edit(t, func(d map[string]any) {
				widgetPath(d)["get"].(map[string]any)["responses"].(map[string]any)["409"] = map[string]any{"$ref": "#/components/responses/Problem"}
			}))
		}, "GET /widgets/{id} 409 is documented, but no case provoked it"},
		{"an exemption for a status that was answered", func(t *testing.T) OpenAPITest {
			s := tinyTest(t, &tiny{}, tinyDoc)
			s.Unprovoked["GET /widgets/{id} 404"] = "wrongly"
			return s
		}, "GET /widgets/{id} 404 is listed as unprovoked, but a case provoked it"},
		{"a request example its schema refuses", func(t *testing.T) OpenAPITest {
			return tinyTest(t, &tiny{}, strings.Replace(tinyDoc, `{"name": "sprocket"}`, `{"name": ""}`, 1))
		}, "request example rename breaks the body's schema"},
		{"a request example never sent", func(t *testing.T) OpenAPITest {
			s := tinyTest(t, &tiny{}, tinyDoc)
			s.Cases[2].Example, s.Cases[2].Body = "", `{"name":"sprocket"}`
			return s
		}, "request example rename was never sent"},
		{"the case's status not provoked", func(t *testing.T) OpenAPITest {
			s := tinyTest(t, &tiny{}, tinyDoc)
			s.Cases[1].Status = 200
			return s
		}, "status 404, the case wants 200"},
		{"an accepted request the schema refuses", func(t *testing.T) OpenAPITest {
			s := tinyTest(t, &tiny{}, tinyDoc)
			s.Cases[2].Example, s.Cases[2].Body = "", `{"name":"sprocket","colour":"red"}`
			return s
		}, "was accepted, but the schema refuses it"},
		{"a wrong Content-Type", func(t *testing.T) OpenAPITest {
			return tinyTest(t, &tiny{}, strings.Replace(tinyDoc, `"text/plain"`, `"application/openmetrics-text"`, 1))
		}, `Content-Type "text/plain`},
	} {
		t.Run(tc.name, func(t *testing.T) { assertError(t, tc.test(t).Check(), tc.want) })
	}
}

// withAuth documents tinyDoc's authentication as the services do: both
// schemes, the widget's read and write secured (the write with the write
// scope) and refused with 401, the write with 403 too, /metrics optional
// and the probes open.
func withAuth(d map[string]any) {
	d["components"].(map[string]any)["securitySchemes"] = map[string]any{
		"apiKey":    map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key"},
		"bearerJWT": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
	}
	read := []any{map[string]any{"apiKey": []any{}}, map[string]any{"bearerJWT": []any{}}}
	write := []any{map[string]any{"apiKey": []any{}}, map[string]any{"bearerJWT": []any{"orderflow:write"}}}
	refused := map[string]any{"$ref": "#/components/responses/Problem"}
	paths := d["paths"].(map[string]any)
	for _, op := range []struct {
		path, method string
		security     []any
		codes        []string
	}{
		{"/widgets/{id}", "get", read, []string{"401"}},
		{"/widgets/{id}", "put", write, []string{"401", "403"}},
		{"/metrics", "get", append([]any{map[string]any{}}, read...), []string{"401"}},
		{"/healthz", "get", []any{}, nil},
		{"/readyz", "get", []any{}, nil},
	} {
		o := paths[op.path].(map[string]any)[op.method].(map[string]any)
		o["security"] = op.security
		for _, code := range op.codes {
			o["responses"].(map[string]any)[code] = refused
		}
	}
}

// tinyAuthTest is tinyTest with authentication documented and the tiny
// service also run behind OpenAPIAuth's middleware (auth true), or with
// no auth at all (false).
func tinyAuthTest(t *testing.T, auth bool, change func(d map[string]any)) OpenAPITest {
	s := tinyTest(t, &tiny{}, edit(t, func(d map[string]any) {
		withAuth(d)
		if change != nil {
			change(d)
		}
	}))
	r := httpserver.NewRouter(prometheus.NewRegistry())
	(&tiny{}).routes(r)
	var h http.Handler = r
	if auth {
		h = OpenAPIAuth(t).Middleware(r)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s.AuthBaseURL = srv.URL
	return s
}

func widgetOp(d map[string]any, method string) map[string]any {
	return widgetPath(d)[method].(map[string]any)
}

// TestOpenAPIAuthCheckBites documents authentication and breaks the
// document or the service in each way the checker must notice: an auth
// status claimed that the service never gives, one it gives omitted, an
// open operation that is not, a scheme the service does not take.
func TestOpenAPIAuthCheckBites(t *testing.T) {
	t.Parallel()
	t.Run("passes when document and service agree", func(t *testing.T) {
		if errs := tinyAuthTest(t, true, nil).Check(); len(errs) > 0 {
			t.Fatalf("errors: %v", errs)
		}
	})
	t.Run("documented auth goes unseen without AuthBaseURL", func(t *testing.T) {
		s := tinyAuthTest(t, true, nil)
		s.AuthBaseURL = ""
		assertError(t, s.Check(), "PUT /widgets/{id} 403 is documented, but no case provoked it")
	})
	for _, tc := range []struct {
		name   string
		auth   bool
		change func(d map[string]any)
		want   string
	}{
		{"a 403 on a read, which only writes get", true, func(d map[string]any) {
			widgetOp(d, "get")["responses"].(map[string]any)["403"] = map[string]any{"$ref": "#/components/responses/Problem"}
		}, "GET /widgets/{id} 403 is documented, but no case provoked it"},
		{"a 401 the service gives, not documented", true, func(d map[string]any) {
			delete(widgetOp(d, "put")["responses"].(map[string]any), "401")
		}, "status 401 is not documented for PUT /widgets/{id}"},
		{"a refusal the service never gives (auth not wired)", false, nil,
			"status 200, the case wants 401"},
		{"a secured read documented as open", true, func(d map[string]any) {
			widgetOp(d, "get")["security"] = []any{}
		}, "GET /widgets/{id} is documented as open (security []), but with HTTP_AUTH on it answers 401"},
		{"an API key header the service does not read", true, func(d map[string]any) {
			d["components"].(map[string]any)["securitySchemes"].(map[string]any)["apiKey"].(map[string]any)["name"] = "X-Api-Token"
		}, "security scheme apiKey is not one the service takes"},
		{"no bearer scheme", true, func(d map[string]any) {
			delete(d["components"].(map[string]any)["securitySchemes"].(map[string]any), "bearerJWT")
		}, "security names bearerJWT, which components.securitySchemes does not define"},
		{"a write without the write scope", true, func(d map[string]any) {
			widgetOp(d, "put")["security"] = []any{map[string]any{"apiKey": []any{}}, map[string]any{"bearerJWT": []any{}}}
		}, "no bearer security requirement names the scope orderflow:write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertError(t, tinyAuthTest(t, tc.auth, tc.change).Check(), tc.want)
		})
	}
}

// assertError fails t unless one of errs says want.
func assertError(t *testing.T, errs []error, want string) {
	t.Helper()
	for _, err := range errs {
		if strings.Contains(err.Error(), want) {
			return
		}
	}
	t.Errorf("no error says %q; errors: %v", want, errs)
}
