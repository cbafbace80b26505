package warehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/services/warehouse/internal/warehousedb"
)

// Limits of PUT /inventory/{sku}. A SKU follows contract.SKU, as POST
// /orders takes it. A billion units is more than any shelf holds and far
// from overflowing the bigint that cancelled picks add their units back to.
const (
	maxStockBodyBytes = 4 << 10
	maxAvailable      = 1_000_000_000
)

// ProblemValidation is the problem type (RFC 9457) of a 422.
const ProblemValidation = httpserver.ProblemValidation

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
// seen yet has the default stock, none reserved; a {sku} no order could
// carry (contract.SKU) is a 422 naming it.
func (s *api) handleInventoryGet(w http.ResponseWriter, r *http.Request) {
	sku, err := httpserver.PathValue(r, "sku", contract.SKU.Check)
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
// the SKU's available units become n (0 to 1,000,000,000); units reserved
// by scheduled picks stay reserved. 200 with the stock as GET answers it;
// 400 for a body that is not Unicode text or not a JSON object, 413 over
// 4 KiB, 422 naming each bad field, the {sku} included. Only a 200 writes.
func (s *api) handleInventoryPut(w http.ResponseWriter, r *http.Request) {
	sku, skuErrs, err := httpserver.PathField(r, "sku", contract.SKU.Check)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := httpserver.ReadBody(w, r, maxStockBodyBytes)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	available, fieldErrs, err := decodeStockRequest(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if fieldErrs = append(skuErrs, fieldErrs...); len(fieldErrs) > 0 {
		s.writeError(w, r, httpserver.Invalid("the stock breaks the rules listed in errors", fieldErrs))
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

var stockFields = []string{"available"}

// decodeStockRequest parses a PUT /inventory/{sku} body. The error, a 400
// *httpserver.InputError, is for a body that is not Unicode text or not
// one JSON object; the field errors list every field that breaks a rule
// (HTTP 422).
func decodeStockRequest(body []byte) (int64, []httpserver.FieldError, error) {
	top, err := httpserver.DecodeObject(body)
	if err != nil {
		return 0, nil, err
	}
	errs := httpserver.UnknownFields(top, stockFields, "")
	// ParseInt takes the JSON number as written: a fraction, an exponent or
	// a string fails, where json.Unmarshal would round 1e3 into an int.
	n, err := strconv.ParseInt(string(top["available"]), 10, 64)
	if err != nil || n < 0 || n > maxAvailable {
		errs = append([]httpserver.FieldError{{Field: "available",
			Message: fmt.Sprintf("must be an integer from 0 to %d", maxAvailable)}}, errs...)
	}
	return n, errs, nil
}

// writeError answers err as application/problem+json. Only server errors
// are logged: the rest are the client's to see.
func (s *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var p httpserver.Problem
	var in *httpserver.InputError
	switch {
	case errors.As(err, &in):
		p = in.Problem()
	case errors.Is(err, ErrNotFound):
		p.Status, p.Detail = http.StatusNotFound, "warehouse has no shipment for this order"
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		p.Status, p.Title = 499, "Client closed request"
	default:
		httpserver.WriteServerError(w, r, s.log, err)
		return
	}
	httpserver.WriteProblem(w, r, p)
}
