package servicetest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/pkg/service"
)

// HostileValues are path and query values, unescaped, that a hostile
// client sends: NUL and other control characters, invalid UTF-8 (a stray
// byte, a truncated sequence, an encoded surrogate), a slash, a percent
// sign, and an over-long value. An edge must answer each with a 4xx.
var HostileValues = []string{
	"\x00", "a\x00b", "\n", "a\x1fb", "\x7f", "\u0085", "\u009f", "\xff", "a\xc3", "\xed\xa0\x80",
	"a/b", "%", "%zz", "", strings.Repeat("a", 65), strings.Repeat("é", 2000),
}

// Edge is a service's HTTP routes on a fresh database migrated as the
// service migrates it, without its relay, consumer or timers: what a test
// of the service's HTTP edge needs. URL serves it over real HTTP; Handler
// is the same router, for fuzz tests to call in-process.
type Edge struct {
	URL     string
	Handler http.Handler
	Pool    *pgxpool.Pool
}

// NewEdge builds the router every service starts from (httpserver.NewRouter)
// with the routes that routes returns for the pool. migrations holds the
// service's embedded migrations/ directory.
func NewEdge(t testing.TB, name string, migrations fs.FS, routes func(pool *pgxpool.Pool, log *slog.Logger) func(chi.Router)) *Edge {
	t.Helper()
	pool := pgtest.NewPool(t)
	if err := service.Migrate(context.Background(), pool, name, service.Sub(migrations, "migrations")); err != nil {
		t.Fatal(err)
	}
	r := httpserver.NewRouter(prometheus.NewRegistry())
	routes(pool, slog.New(slog.DiscardHandler))(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &Edge{URL: srv.URL, Handler: r, Pool: pool}
}

// Answer is a response read whole.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// Problem decodes a problem+json answer, failing t when it is not one.
func (a Answer) Problem(t testing.TB) httpserver.Problem {
	t.Helper()
	var p httpserver.Problem
	if ct := a.Header.Get("Content-Type"); ct != httpserver.ContentTypeProblem {
		t.Fatalf("Content-Type %q, want %s; body %s", ct, httpserver.ContentTypeProblem, a.Body)
	}
	if err := json.Unmarshal(a.Body, &p); err != nil || p.Status != a.Status || p.Title == "" {
		t.Fatalf("problem %s for status %d: %v", a.Body, a.Status, err)
	}
	return p
}

// Names reports whether the problem's errors name field.
func Names(p httpserver.Problem, field string) bool {
	for _, fe := range p.Errors {
		if fe.Field == field && fe.Message != "" {
			return true
		}
	}
	return false
}

// Do sends a request over real HTTP; target is the path and query, escaped
// as a client sends them.
func (e *Edge) Do(t testing.TB, method, target, body string) Answer {
	t.Helper()
	req, err := http.NewRequest(method, e.URL+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Serve sends a request to the handler in-process and fails t on a 5xx or
// on a refusal that is not problem+json.
func (e *Edge) Serve(t testing.TB, method, target string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.Handler.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s %q: %d %s", method, target, body, rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); rec.Code >= 400 && ct != httpserver.ContentTypeProblem {
		t.Fatalf("%s %s: %d with Content-Type %q", method, target, rec.Code, ct)
	}
	return rec
}

// Rows counts the rows of tables, together: what a refused request must
// leave as it was.
func (e *Edge) Rows(t testing.TB, tables ...string) int {
	t.Helper()
	total := 0
	for _, table := range tables {
		var n int
		if err := e.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

// EachHostile sends method target(v) with body over real HTTP for each of
// HostileValues, in a subtest each, and checks the answer against
// want(v): its status and, for a 422, the field its errors must name. A
// refusal must be problem+json and leave the rows of tables as they were.
func (e *Edge) EachHostile(t *testing.T, method string, target func(v string) string, body string,
	want func(v string) (status int, field string), tables ...string) {
	t.Helper()
	for _, v := range HostileValues {
		t.Run(method+" "+strconv.Quote(v), func(t *testing.T) {
			before := e.Rows(t, tables...)
			a := e.Do(t, method, target(v), body)
			status, field := want(v)
			if a.Status != status {
				t.Fatalf("%s %s: %d %s, want %d", method, target(v), a.Status, a.Body, status)
			}
			if status < 400 {
				return
			}
			if p := a.Problem(t); field != "" && !Names(p, field) {
				t.Errorf("%s %s: errors %+v do not name %s", method, target(v), p.Errors, field)
			}
			if after := e.Rows(t, tables...); after != before {
				t.Errorf("%s %s was refused but wrote %d rows", method, target(v), after-before)
			}
		})
	}
}

// FuzzID fuzzes a GET that takes an order id, target(id) escaping it as a
// client would: seeded with HostileValues and UUIDs, no answer may be a
// 5xx, and an id uuid.Parse refuses must get status.
func (e *Edge) FuzzID(f *testing.F, target func(id string) string, status int) {
	for _, v := range append(HostileValues, uuid.NewString(), uuid.NewString()+"\x00") {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, id string) {
		rec := e.Serve(t, http.MethodGet, target(id), nil)
		if _, err := uuid.Parse(id); err != nil && rec.Code != status {
			t.Fatalf("GET %s: %d %s, want %d", target(id), rec.Code, rec.Body, status)
		}
	})
}
