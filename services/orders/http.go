package orders

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/httpserver"
)

// api is the orders HTTP API.
type api struct {
	store *Store
	log   *slog.Logger
}

func newAPI(pool *pgxpool.Pool, ob *outbox.Outbox, log *slog.Logger) *api {
	return &api{store: NewStore(pool, ob), log: log}
}

// NewServer returns the API with /healthz, /readyz (database and relay) and
// /metrics, without the relay running, so tests and benchmarks mount it on
// httptest.NewServer; Run adds the relay. HTTP metrics are registered with
// reg.
func NewServer(pool *pgxpool.Pool, ob *outbox.Outbox, reg *prometheus.Registry, log *slog.Logger) http.Handler {
	r := httpserver.NewRouter(reg,
		httpserver.Check{Name: "postgres", Func: pool.Ping},
		httpserver.Check{Name: "relay", Func: ob.Ready},
	)
	newAPI(pool, ob, log).routes(r)
	return r
}

// routes adds the service's endpoints to r.
func (s *api) routes(r chi.Router) {
	r.Post("/orders", s.handleOrderCreate)
	r.Get("/orders/{id}", s.handleOrderGet)
	r.Post("/orders/{id}/cancel", s.handleOrderCancel)
}

// orderJSON is an order as POST /orders answers it.
type orderJSON struct {
	ID         uuid.UUID   `json:"id"`
	Status     string      `json:"status"`
	CustomerID string      `json:"customerId"`
	Email      string      `json:"email"`
	Items      []orderItem `json:"items"`
	TotalCents int64       `json:"totalCents"`
	Currency   string      `json:"currency"`
	CreatedAt  time.Time   `json:"createdAt"`
}

// orderDetailJSON is an order as GET /orders/{id} and POST
// /orders/{id}/cancel answer it.
type orderDetailJSON struct {
	orderJSON
	CancelReason  *string        `json:"cancelReason"` // null unless cancelled
	PointsAwarded int64          `json:"pointsAwarded"`
	UpdatedAt     time.Time      `json:"updatedAt"`
	Timeline      []timelineJSON `json:"timeline"`
}

type timelineJSON struct {
	Event      string    `json:"event"`
	EventID    uuid.UUID `json:"eventId"`
	Service    string    `json:"service"`
	OccurredAt time.Time `json:"occurredAt"`
	RecordedAt time.Time `json:"recordedAt"` // when orders saw it: how far behind it is
}

func newOrderJSON(o Order) orderJSON {
	return orderJSON{
		ID: o.ID, Status: o.Status, CustomerID: o.CustomerID, Email: o.Email,
		Items: o.Items, TotalCents: o.TotalCents, Currency: o.Currency, CreatedAt: o.CreatedAt,
	}
}

func newOrderDetailJSON(o Order) orderDetailJSON {
	d := orderDetailJSON{
		orderJSON:     newOrderJSON(o),
		PointsAwarded: o.PointsAwarded,
		UpdatedAt:     o.UpdatedAt,
		Timeline:      make([]timelineJSON, len(o.Timeline)),
	}
	if o.CancelReason != "" {
		d.CancelReason = &o.CancelReason
	}
	for i, t := range o.Timeline {
		d.Timeline[i] = timelineJSON(t)
	}
	return d
}

// errNotUUID is a path {id} that no order can have. It answers 404, as an
// unknown order does: whatever bytes it holds (NUL, invalid UTF-8, a
// thousand of them) it never reaches the database.
var errNotUUID = errors.New("not a UUID")

// IdempotencyKeyHeader names the request header that makes POST /orders safe
// to retry.
const IdempotencyKeyHeader = "Idempotency-Key"

// handleOrderCreate serves POST /orders.
//
// A body over 64 KiB is refused with 413 before it is parsed. With an
// Idempotency-Key, the first request answers 201 and a replay of the same
// request answers 201 too, as docs/design.md says, with the same order (as
// it is now: its status may have moved on), the same Location and
// "Idempotent-Replayed: true"; the key with a different request answers 422.
func (s *api) handleOrderCreate(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.writeError(w, r, errNotJSON)
		return
	}
	// The key is stored as text, and Go's server passes on header bytes
	// 0x80 to 0xFF: without the text check, invalid UTF-8 would fail the
	// insert (a 500).
	key, hasKey := r.Header[IdempotencyKeyHeader]
	if hasKey && (len(key) != 1 || key[0] == "" || len(key[0]) > maxIdempotencyKey || contract.CheckText(key[0]) != nil) {
		s.writeError(w, r, httpserver.BadRequest(fmt.Sprintf(
			"%s must be one value of 1 to %d bytes of text (UTF-8, no control characters)", IdempotencyKeyHeader, maxIdempotencyKey)))
		return
	}
	body, err := httpserver.ReadBody(w, r, maxBodyBytes)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, fieldErrs, err := decodeOrderRequest(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(fieldErrs) > 0 {
		s.writeError(w, r, httpserver.Invalid("the order breaks the rules listed in errors", fieldErrs))
		return
	}

	var idempotencyKey string
	if hasKey {
		idempotencyKey = key[0]
	}
	o, created, err := s.store.createOrder(r.Context(), req, idempotencyKey)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/orders/"+o.ID.String())
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	httpserver.WriteJSON(w, http.StatusCreated, newOrderJSON(o))
}

// handleOrderGet serves GET /orders/{id}.
func (s *api) handleOrderGet(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(chi.URLParam(r, "id"))
	if err != nil {
		s.writeError(w, r, errNotUUID)
		return
	}
	o, err := s.store.Order(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	httpserver.WriteJSON(w, http.StatusOK, newOrderDetailJSON(o))
}

// handleOrderCancel serves POST /orders/{id}/cancel. The body is optional:
// {"reason": "..."}, 1 to 200 characters, default "customer_request"; a
// body needs Content-Type application/json, as for POST /orders.
//
// 202 with the order (as GET answers it) once it is cancelled: by this
// request, which emits OrderCancelled, or before, which emits nothing more
// (a retried cancel is safe). 404 for an unknown order, 409 when it has
// shipped or its payment failed; 400, 413, 415 or 422 for a bad body.
// Only a 202 that cancelled writes anything.
func (s *api) handleOrderCancel(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(chi.URLParam(r, "id"))
	if err != nil {
		s.writeError(w, r, errNotUUID)
		return
	}
	body, err := httpserver.ReadBody(w, r, maxCancelBodyBytes)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			s.writeError(w, r, errNotJSON)
			return
		}
	}
	reason, fieldErrs, err := decodeCancelRequest(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(fieldErrs) > 0 {
		s.writeError(w, r, httpserver.Invalid("the cancellation breaks the rules listed in errors", fieldErrs))
		return
	}
	o, err := s.store.cancelOrder(r.Context(), id, reason)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	httpserver.WriteJSON(w, http.StatusAccepted, newOrderDetailJSON(o))
}

// errNotJSON refuses a body of another content type.
var errNotJSON = &httpserver.InputError{Status: http.StatusUnsupportedMediaType, Detail: "Content-Type must be application/json"}

// Problem types (RFC 9457) of the two kinds of 422, so clients can tell
// them apart, and of the 409 of a cancel that comes too late. The others
// are "about:blank": their status says it all.
const (
	ProblemValidation          = httpserver.ProblemValidation
	ProblemIdempotencyConflict = "urn:orderflow:problem:idempotency-key-reused"
	ProblemNotCancellable      = "urn:orderflow:problem:order-not-cancellable"
)

// writeError answers err as application/problem+json. Only server errors
// are logged: the rest are the client's to see.
func (s *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var p httpserver.Problem
	var in *httpserver.InputError
	switch {
	case errors.As(err, &in):
		p = in.Problem()
	case errors.Is(err, errNotUUID):
		p.Status, p.Detail = http.StatusNotFound, "no order has this id: an order id is a UUID"
	case errors.Is(err, ErrNotFound):
		p.Status, p.Detail = http.StatusNotFound, "no order has this id"
	case errors.Is(err, ErrShipped):
		p.Type, p.Title, p.Status = ProblemNotCancellable, "Order cannot be cancelled", http.StatusConflict
		p.Detail = "the order has shipped: it can no longer be cancelled"
	case errors.Is(err, ErrPaymentFailed):
		p.Type, p.Title, p.Status = ProblemNotCancellable, "Order cannot be cancelled", http.StatusConflict
		p.Detail = "the order's payment failed: there is nothing to cancel"
	case errors.Is(err, ErrIdempotencyConflict):
		p.Type, p.Title, p.Status = ProblemIdempotencyConflict, "Idempotency-Key reused", http.StatusUnprocessableEntity
		p.Detail = "this Idempotency-Key was already used with a different request body"
		p.Errors = []httpserver.FieldError{{Field: IdempotencyKeyHeader, Message: "already used for a different request"}}
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away and reads no answer; nginx's code for it.
		p.Status, p.Title = 499, "Client closed request"
	default:
		httpserver.WriteServerError(w, r, s.log, err)
		return
	}
	httpserver.WriteProblem(w, r, p)
}
