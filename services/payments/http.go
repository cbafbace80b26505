package payments

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/services/payments/internal/paymentsdb"
)

// api is the payments HTTP API: the service's view of each order's
// payment.
type api struct {
	pool *pgxpool.Pool
	log  *slog.Logger
}

// routes adds the service's endpoints to r.
func (s *api) routes(r chi.Router) {
	r.Get("/payments/{orderId}", s.handlePaymentGet)
}

// paymentJSON is a payment as GET /payments/{orderId} answers it.
type paymentJSON struct {
	OrderID     uuid.UUID `json:"orderId"`
	PaymentID   uuid.UUID `json:"paymentId"`
	Status      string    `json:"status"` // captured | failed | refunded
	Reason      string    `json:"reason"` // "" when captured
	AmountCents int64     `json:"amountCents"`
	Currency    string    `json:"currency"`
	Attempts    int32     `json:"attempts"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// handlePaymentGet serves GET /payments/{orderId}.
func (s *api) handlePaymentGet(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(chi.URLParam(r, "orderId"))
	if err != nil {
		s.writeError(w, r, ErrNotFound)
		return
	}
	p, err := paymentsdb.New(s.pool).GetPayment(r.Context(), id)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	httpserver.WriteJSON(w, http.StatusOK, paymentJSON{
		OrderID: p.OrderID, PaymentID: p.PaymentID, Status: p.Status, Reason: p.Reason,
		AmountCents: p.AmountCents, Currency: p.Currency, Attempts: p.Attempts,
		CreatedAt: p.CreatedAt.UTC(), UpdatedAt: p.UpdatedAt.UTC(),
	})
}

// writeError answers err as application/problem+json. Only server errors
// are logged: the rest are the client's to see.
func (s *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var p httpserver.Problem
	switch {
	case errors.Is(err, ErrNotFound):
		p.Status, p.Detail = http.StatusNotFound, "payments has no payment for this order"
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		p.Status, p.Title = 499, "Client closed request"
	default:
		httpserver.WriteServerError(w, r, s.log, err)
		return
	}
	httpserver.WriteProblem(w, r, p)
}
