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
		t.Run(tc.name, func(t *testing.T) {
			errs := tc.test(t).Check()
			for _, err := range errs {
				if strings.Contains(err.Error(), tc.want) {
					return
				}
			}
			t.Errorf("no error says %q; errors: %v", tc.want, errs)
		})
	}
}
