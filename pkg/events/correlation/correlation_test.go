package correlation_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/events/correlation"
)

const validTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestMiddleware(t *testing.T) {
	tests := []struct {
		name        string
		header      []string // X-Correlation-ID values sent; nil sends none
		wantKept    bool     // the first sent value is kept
		traceparent string
		wantTP      string
	}{
		{name: "absent"},
		{name: "present", header: []string{"abc-123"}, wantKept: true},
		{name: "uuid", header: []string{"7b0f4a8e-1c1d-4b55-9f6e-2a4f3c5d6e7f"}, wantKept: true},
		{name: "printable punctuation", header: []string{"req:42/a_b.c~!"}, wantKept: true},
		{name: "max length", header: []string{strings.Repeat("a", correlation.MaxIDLen)}, wantKept: true},
		{name: "first of several", header: []string{"first", "second"}, wantKept: true},
		{name: "empty", header: []string{""}},
		{name: "oversize", header: []string{strings.Repeat("a", correlation.MaxIDLen+1)}},
		{name: "space", header: []string{"a b"}},
		{name: "control", header: []string{"a\x01b"}},
		{name: "tab", header: []string{"a\tb"}},
		{name: "non-ascii", header: []string{"caf\u00e9"}},
		{name: "del", header: []string{"a\x7f"}},
		{name: "traceparent kept", traceparent: validTP, wantTP: validTP},
		{name: "traceparent garbage", traceparent: "garbage"},
		{name: "traceparent upper-case", traceparent: strings.ToUpper(validTP)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotID, gotTP, headerSeen string
			h := correlation.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotID = correlation.ID(r.Context())
				gotTP = correlation.Traceparent(r.Context())
				headerSeen = w.Header().Get(correlation.Header)
				w.WriteHeader(http.StatusTeapot)
			}))
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, v := range tt.header {
				req.Header.Add(correlation.Header, v)
			}
			if tt.traceparent != "" {
				req.Header.Set(correlation.TraceparentHeader, tt.traceparent)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if tt.wantKept {
				if gotID != tt.header[0] {
					t.Errorf("context id = %q, want %q", gotID, tt.header[0])
				}
			} else {
				if _, err := uuid.Parse(gotID); err != nil {
					t.Errorf("context id = %q, want a generated UUID: %v", gotID, err)
				}
			}
			if got := rec.Header().Values(correlation.Header); len(got) != 1 || got[0] != gotID {
				t.Errorf("response header = %q, want [%q]", got, gotID)
			}
			if headerSeen != gotID {
				t.Errorf("header seen by handler before writing = %q, want %q", headerSeen, gotID)
			}
			if gotTP != tt.wantTP {
				t.Errorf("traceparent = %q, want %q", gotTP, tt.wantTP)
			}
		})
	}
}

func TestMiddlewareGeneratesDistinctIDs(t *testing.T) {
	seen := map[string]bool{}
	h := correlation.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for range 100 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		id := rec.Header().Get(correlation.Header)
		if seen[id] {
			t.Fatalf("id %q generated twice", id)
		}
		seen[id] = true
	}
}

func TestNewID(t *testing.T) {
	id := correlation.NewID()
	u, err := uuid.Parse(id)
	if err != nil {
		t.Fatalf("NewID() = %q: %v", id, err)
	}
	if u.Version() != 4 {
		t.Errorf("NewID() version = %d, want 4", u.Version())
	}
	if !correlation.ValidID(id) {
		t.Errorf("ValidID(NewID()) = false")
	}
}

func TestValidTraceparent(t *testing.T) {
	tests := []struct {
		tp   string
		want bool
	}{
		{validTP, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"", false},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},       // unknown version
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},       // upper-case
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},       // zero trace-id
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},       // zero parent-id
		{"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", false},        // short trace-id
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false}, // trailing data
		{"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", false},       // separators
		{"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false},       // non-hex
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z", false},       // non-hex flags
	}
	for _, tt := range tests {
		if got := correlation.ValidTraceparent(tt.tp); got != tt.want {
			t.Errorf("ValidTraceparent(%q) = %v, want %v", tt.tp, got, tt.want)
		}
	}
}

func TestContextRoundTrip(t *testing.T) {
	ctx := context.Background()
	if correlation.ID(ctx) != "" || correlation.Traceparent(ctx) != "" {
		t.Fatal("empty context carries values")
	}
	ctx = correlation.WithTraceparent(correlation.WithID(ctx, "id-1"), validTP)
	if got := correlation.ID(ctx); got != "id-1" {
		t.Errorf("ID = %q", got)
	}
	if got := correlation.Traceparent(ctx); got != validTP {
		t.Errorf("Traceparent = %q", got)
	}
}
