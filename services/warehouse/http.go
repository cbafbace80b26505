package warehouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/services/warehouse/internal/warehousedb"
)

// Limits of PUT /inventory/{sku}. SKUs are at most 64 characters, as
// POST /orders accepts them.
const (
	maxStockBodyBytes = 4 << 10
	maxSKUChars       = 64
)

// ProblemValidation is the problem type (RFC 9457) of a 422.
const ProblemValidation = "urn:orderflow:problem:validation-failed"

// api is the warehouse HTTP API: each order's shipment and each SKU's
// stock, for people and tests, and seeding a SKU's stock.
type api struct {
	pool         *pgxpool.Pool
	defaultStock int64
	log          *slog.Logger
}

// routes adds the service's endpoints to r.
func (s *api) routes(r chi.Router) {
	r.Get("/shipments/{orderId}", s.handleShipmentGet)
	r.Get("/inventory/{sku}", s.handleInventoryGet)
	r.Put("/inventory/{sku}", s.handleInventoryPut)
}

// shipmentJSON is a shipment as GET /shipments/{orderId} answers it.
type shipmentJSON struct {
	OrderID      uuid.UUID  `json:"orderId"`
	Status       string     `json:"status"`     // scheduled | shipped | cancelled | unavailable
	TrackingID   *string    `json:"trackingId"` // null until shipped
	PickID       *uuid.UUID `json:"pickId"`     // null when no pick was made (unavailable, or cancelled before payment)
	CancelReason string     `json:"cancelReason,omitempty"`
	Items        []lineJSON `json:"items"` // per SKU; empty when cancelled before payment
	CreatedAt    time.Time  `json:"createdAt"`
	UpdatedAt    time.Time  `json:"updatedAt"`
}

// lineJSON is one SKU of a shipment.
type lineJSON struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

// inventoryJSON is a SKU's stock as GET and PUT /inventory/{sku} answer
// it: units free to reserve, and units reserved by scheduled picks.
type inventoryJSON struct {
	SKU       string `json:"sku"`
	Available int64  `json:"available"`
	Reserved  int64  `json:"reserved"`
}

// handleShipmentGet serves GET /shipments/{orderId}.
func (s *api) handleShipmentGet(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(chi.URLParam(r, "orderId"))
	if err != nil {
		s.writeError(w, r, ErrNotFound)
		return
	}
	var sh warehousedb.Shipment
	var ls []warehousedb.ListLinesRow
	err = pgx.BeginTxFunc(r.Context(), s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		q := warehousedb.New(tx)
		var err error
		if sh, err = q.GetShipment(r.Context(), id); err != nil {
			return err
		}
		ls, err = q.ListLines(r.Context(), id)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := shipmentJSON{
		OrderID: sh.OrderID, Status: sh.Status, CancelReason: sh.CancelReason,
		Items:     make([]lineJSON, 0, len(ls)),
		CreatedAt: sh.CreatedAt.UTC(), UpdatedAt: sh.UpdatedAt.UTC(),
	}
	if sh.TrackingID.Valid {
		out.TrackingID = &sh.TrackingID.String
	}
	if sh.PickID.Valid {
		pickID := uuid.UUID(sh.PickID.Bytes)
		out.PickID = &pickID
	}
	for _, l := range ls {
		out.Items = append(out.Items, lineJSON{SKU: l.Sku, Quantity: l.Quantity})
	}
	httpserver.WriteJSON(w, http.StatusOK, out)
}

// handleInventoryGet serves GET /inventory/{sku}. A SKU warehouse has not
// seen yet has the default stock, none reserved.
func (s *api) handleInventoryGet(w http.ResponseWriter, r *http.Request) {
	sku, err := skuParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	inv, err := s.inventory(r.Context(), s.pool, sku)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	httpserver.WriteJSON(w, http.StatusOK, inv)
}

// handleInventoryPut serves PUT /inventory/{sku} with {"available": n}:
// the SKU's available units become n (n >= 0); units reserved by scheduled
// picks stay reserved. 200 with the stock as GET answers it; 400 for a body
// that is not a JSON object, 413 over 4 KiB, 422 naming each bad field.
func (s *api) handleInventoryPut(w http.ResponseWriter, r *http.Request) {
	sku, err := skuParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxStockBodyBytes))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			s.writeError(w, r, &inputError{status: http.StatusRequestEntityTooLarge,
				detail: fmt.Sprintf("the body must not exceed %d bytes", maxStockBodyBytes)})
			return
		}
		s.writeError(w, r, &inputError{status: http.StatusBadRequest, detail: "reading the body: " + err.Error()})
		return
	}
	available, fieldErrs, err := decodeStockRequest(body)
	if err != nil {
		s.writeError(w, r, &inputError{status: http.StatusBadRequest, detail: err.Error()})
		return
	}
	if n := utf8.RuneCountInString(sku); n > maxSKUChars {
		fieldErrs = append([]httpserver.FieldError{{Field: "sku", Message: fmt.Sprintf("must be 1 to %d characters", maxSKUChars)}}, fieldErrs...)
	}
	if len(fieldErrs) > 0 {
		s.writeError(w, r, &inputError{status: http.StatusUnprocessableEntity,
			detail: "the stock breaks the rules listed in errors", fields: fieldErrs})
		return
	}
	var inv inventoryJSON
	err = pgx.BeginFunc(r.Context(), s.pool, func(tx pgx.Tx) error {
		if err := warehousedb.New(tx).SetStock(r.Context(), warehousedb.SetStockParams{Sku: sku, Available: available}); err != nil {
			return fmt.Errorf("set stock: %w", err)
		}
		var err error
		inv, err = s.inventory(r.Context(), tx, sku)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	httpserver.WriteJSON(w, http.StatusOK, inv)
}

// inventory reads sku's stock; db is the pool or a transaction.
func (s *api) inventory(ctx context.Context, db warehousedb.DBTX, sku string) (inventoryJSON, error) {
	row, err := warehousedb.New(db).GetInventory(ctx, warehousedb.GetInventoryParams{Sku: sku, DefaultAvailable: s.defaultStock})
	if err != nil {
		return inventoryJSON{}, fmt.Errorf("get inventory: %w", err)
	}
	return inventoryJSON{SKU: sku, Available: row.Available, Reserved: row.Reserved}, nil
}

// skuParam returns the {sku} path segment, percent-decoded: chi matches
// the escaped path when the request has one, so "A%2FB" is the SKU "A/B".
func skuParam(r *http.Request) (string, error) {
	sku := chi.URLParam(r, "sku")
	if r.URL.RawPath == "" {
		return sku, nil
	}
	sku, err := url.PathUnescape(sku)
	if err != nil {
		return "", &inputError{status: http.StatusBadRequest, detail: "the SKU in the path is not valid percent-encoding"}
	}
	return sku, nil
}

var stockFields = []string{"available"}

// decodeStockRequest parses a PUT /inventory/{sku} body. The error is for
// a body that is not one JSON object (HTTP 400); the field errors list
// every field that breaks a rule (HTTP 422).
func decodeStockRequest(body []byte) (int64, []httpserver.FieldError, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return 0, nil, fmt.Errorf("the body must be a JSON object: %v", err)
	}
	if top == nil {
		return 0, nil, errors.New("the body must be a JSON object, not null")
	}
	var errs []httpserver.FieldError
	var unknown []string
	for k := range top {
		if !slices.Contains(stockFields, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		errs = append(errs, httpserver.FieldError{Field: k, Message: "is not a field of the stock (want only available)"})
	}
	n, err := strconv.ParseInt(string(top["available"]), 10, 64)
	if err != nil || n < 0 {
		errs = append([]httpserver.FieldError{{Field: "available", Message: "must be an integer of at least 0"}}, errs...)
	}
	return n, errs, nil
}

// inputError is a request the handler refuses before it reaches the
// database.
type inputError struct {
	status int
	detail string
	fields []httpserver.FieldError
}

func (e *inputError) Error() string { return e.detail }

// writeError answers err as application/problem+json. Only server errors
// are logged: the rest are the client's to see.
func (s *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var p httpserver.Problem
	var in *inputError
	switch {
	case errors.As(err, &in):
		p.Status, p.Detail, p.Errors = in.status, in.detail, in.fields
		if in.status == http.StatusUnprocessableEntity {
			p.Type, p.Title = ProblemValidation, "Validation failed"
		}
	case errors.Is(err, ErrNotFound):
		p.Status, p.Detail = http.StatusNotFound, "warehouse has no shipment for this order"
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		p.Status, p.Title = 499, "Client closed request"
	default:
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		p.Status = http.StatusInternalServerError
		p.Detail = "the error is logged with this request's correlation id " + correlation.ID(r.Context())
	}
	httpserver.WriteProblem(w, r, p)
}
