package httpserver_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/pkg/httpserver"
)

func TestDecodeObject(t *testing.T) {
	refused := map[string]string{
		"invalid UTF-8 in a string":    "{\"a\":\"x\xffy\"}",
		"invalid UTF-8 in a key":       "{\"\xc3\":1}",
		"truncated UTF-8 at the end":   "{\"a\":1}\xe2\x82",
		"UTF-8 encoded surrogate":      "{\"a\":\"\xed\xa0\x80\"}",
		"lone high surrogate":          `{"a":"\ud800"}`,
		"lone low surrogate":           `{"a":"\uDC00"}`,
		"high surrogate then a letter": `{"a":"\ud83dx"}`,
		"two high surrogates":          `{"a":"\ud83d\ud83d"}`,
		"a pair, then a lone one":      `{"a":"\ud83d\ude00\ud800"}`,
		"lone surrogate in a key":      `{"\ud800":1}`,
		"malformed":                    `{"a":`,
		"trailing data":                `{} {}`,
		"array":                        `[]`,
		"null":                         `null`,
		"string":                       `"x"`,
		"empty":                        ``,
		"byte order mark":              "\xef\xbb\xbf{}",
	}
	for name, body := range refused {
		t.Run(name, func(t *testing.T) {
			_, err := httpserver.DecodeObject([]byte(body))
			var in *httpserver.InputError
			if !errors.As(err, &in) || in.Status != http.StatusBadRequest || in.Detail == "" {
				t.Fatalf("DecodeObject(%q) = %v, want a 400", body, err)
			}
		})
	}
	for _, body := range []string{
		`{}`, `{"a":"\u0000"}`, `{"a":"\ud83d\ude00"}`, `{"a":"\\ud800"}`, `{"a":"\\\ud83d\ude00"}`,
		"{\"a\":\"\xef\xbf\xbd\"}", `{"a":"\ufffd"}`, "{\"é\":\"ü\"}", ` {"a":[1,{"b":null}]} `,
	} {
		if _, err := httpserver.DecodeObject([]byte(body)); err != nil {
			t.Errorf("DecodeObject(%q): %v", body, err)
		}
	}
}

// FuzzDecodeObject asserts that an accepted body is JSON and Unicode text,
// and that decoding changed none of its strings: a U+FFFD in a decoded
// string was in the body.
func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, "{\"a\":\"\xff\"}", `{"a":"\ud800"}`, `{"a":"\ud83d\ude00"}`, `{"a":"\\ud800"}`, `{"a":["\u0000"]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		top, err := httpserver.DecodeObject(body)
		if err != nil {
			if in, ok := err.(*httpserver.InputError); !ok || in.Status != http.StatusBadRequest {
				t.Fatalf("error %v is not a 400", err)
			}
			return
		}
		if top == nil || !utf8.Valid(body) || !json.Valid(body) {
			t.Fatalf("accepted %q", body)
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		fffd := bytes.Contains(body, []byte("\ufffd")) || bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`))
		if strings.Contains(must(json.Marshal(v)), "\ufffd") && !fffd {
			t.Fatalf("decoding %q made a U+FFFD", body)
		}
	})
}

func must(b []byte, err error) string {
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestPathParam(t *testing.T) {
	r := chi.NewRouter()
	r.Get("/things/{name}", func(w http.ResponseWriter, r *http.Request) {
		v, err := httpserver.PathParam(r, "name")
		if err != nil {
			w.WriteHeader(err.(*httpserver.InputError).Status)
			return
		}
		_, _ = w.Write([]byte(v))
	})
	for target, want := range map[string]string{
		"/things/plain":   "plain",
		"/things/a%20b":   "a b",
		"/things/A%2FB":   "A/B",
		"/things/%00":     "\x00",
		"/things/%FF":     "\xff",
		"/things/A%2F%FF": "A/\xff",
	} {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != http.StatusOK || rec.Body.String() != want {
			t.Errorf("%s: %d %q, want %q", target, rec.Code, rec.Body.String(), want)
		}
	}
	// RawPath set and a parameter that does not decode: "%2F" makes Go
	// keep the raw path, "%%" cannot be unescaped.
	req := httptest.NewRequest(http.MethodGet, "/things/x", nil)
	req.URL.Path, req.URL.RawPath = "/things/A/%", "/things/A%2F%%"
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("undecodable parameter: %d", rec.Code)
	}
}

func TestInputErrorProblem(t *testing.T) {
	fields := []httpserver.FieldError{{Field: "sku", Message: "must be 1 to 64 characters"}}
	p := httpserver.Invalid("the stock breaks the rules listed in errors", fields).Problem()
	if p.Type != httpserver.ProblemValidation || p.Status != 422 || p.Title != "Validation failed" || len(p.Errors) != 1 {
		t.Errorf("422 problem %+v", p)
	}
	if p := httpserver.BadRequest("no").Problem(); p.Type != "" || p.Status != 400 || p.Detail != "no" {
		t.Errorf("400 problem %+v", p)
	}
}
