package httpserver_test

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/orderflow/orderflow/pkg/httpserver"
)

func TestWriteProblem(t *testing.T) {
	tests := []struct {
		name       string
		p          httpserver.Problem
		wantStatus int
		want       string
	}{
		{
			name:       "defaults",
			p:          httpserver.Problem{},
			wantStatus: 500,
			want:       `{"title":"Internal Server Error","status":500,"instance":"/orders/42"}`,
		},
		{
			name:       "title from status",
			p:          httpserver.Problem{Status: 404, Detail: "no order 42"},
			wantStatus: 404,
			want:       `{"title":"Not Found","status":404,"detail":"no order 42","instance":"/orders/42"}`,
		},
		{
			name: "validation",
			p: httpserver.Problem{
				Type: "https://orderflow.dev/problems/validation", Title: "Invalid order", Status: 422,
				Instance: "urn:x",
				Errors: []httpserver.FieldError{
					{Field: "email", Message: "is not an email address"},
					{Field: "items[0].quantity", Message: "must be between 1 and 1000"},
				},
			},
			wantStatus: 422,
			want: `{"type":"https://orderflow.dev/problems/validation","title":"Invalid order","status":422,"instance":"urn:x",` +
				`"errors":[{"field":"email","message":"is not an email address"},{"field":"items[0].quantity","message":"must be between 1 and 1000"}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			httpserver.WriteProblem(rec, httptest.NewRequest(http.MethodGet, "/orders/42?x=1", nil), tt.p)
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if got := rec.Body.String(); got != tt.want+"\n" {
				t.Errorf("body = %s\nwant   %s", got, tt.want)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	httpserver.WriteJSON(rec, http.StatusCreated, map[string]string{"id": "o1"})
	if rec.Code != http.StatusCreated || rec.Header().Get("Content-Type") != "application/json" ||
		rec.Body.String() != `{"id":"o1"}`+"\n" {
		t.Errorf("got %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
}

func TestWriteJSONUnencodable(t *testing.T) {
	rec := httptest.NewRecorder()
	httpserver.WriteJSON(rec, http.StatusOK, math.Inf(1))
	if rec.Code != http.StatusInternalServerError || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("got %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var p httpserver.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != 500 {
		t.Errorf("body %q: %v", rec.Body.String(), err)
	}
}
