package httpserver

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/retry"
)

// Problem is an RFC 9457 problem details object, written by WriteProblem as
// application/problem+json.
type Problem struct {
	// Type is a URI identifying the kind of problem; empty means
	// "about:blank" (the status code says it all).
	Type string `json:"type,omitempty"`
	// Title is a short summary of the kind of problem; WriteProblem fills in
	// the status text when it is empty.
	Title string `json:"title"`
	// Status is the HTTP status code; WriteProblem uses 500 when it is zero.
	Status int `json:"status"`
	// Detail explains this occurrence, for people.
	Detail string `json:"detail,omitempty"`
	// Instance identifies this occurrence; WriteProblem uses the request
	// path when it is empty.
	Instance string `json:"instance,omitempty"`
	// Errors names each invalid field of a 400 or 422 response.
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError is one invalid field of a request, e.g.
// {"field":"items[0].quantity","message":"must be between 1 and 1000"}.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Content types written by WriteProblem and WriteJSON.
const (
	ContentTypeProblem = "application/problem+json"
	ContentTypeJSON    = "application/json"
)

// WriteProblem writes p as the response to r, filling in Status (500),
// Title (the status text) and Instance (r's path) when they are empty.
func WriteProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if p.Instance == "" && r != nil && r.URL != nil {
		p.Instance = r.URL.Path
	}
	write(w, p.Status, ContentTypeProblem, p)
}

// WriteJSON writes v as a JSON response with the given status. If v cannot
// be encoded (a programming error), it writes a 500 problem instead; nothing
// of v has been sent by then. Errors writing to the client are ignored: the
// client is gone.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	write(w, status, ContentTypeJSON, v)
}

func write(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, contentType = http.StatusInternalServerError, ContentTypeProblem
		b, _ = json.Marshal(Problem{
			Title:  http.StatusText(status),
			Status: status,
			Detail: "the response could not be encoded",
		})
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// WriteServerError answers an error the server could not handle, logging
// it with the request's correlation id, which the answer names: 503 with
// Retry-After when the infrastructure failed (the database or a broker
// away, a connection reset: package retry), since the same request will
// likely succeed in a moment (a client resending an order should keep its
// Idempotency-Key, as the first may have committed); 500 otherwise.
func WriteServerError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	ctx := r.Context()
	p := Problem{Status: http.StatusInternalServerError,
		Detail: "the error is logged with this request's correlation id " + correlation.ID(ctx)}
	if retry.Infrastructure(err) {
		p.Status = http.StatusServiceUnavailable
		p.Detail = "a database or broker this service needs did not answer; retry in a moment " +
			"(with the same Idempotency-Key). " + p.Detail
		w.Header().Set("Retry-After", "1")
		log.WarnContext(ctx, "request failed: infrastructure unavailable", "method", r.Method, "path", r.URL.Path, "error", err)
	} else {
		log.ErrorContext(ctx, "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	WriteProblem(w, r, p)
}
