package loyalty

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/services/loyalty/internal/loyaltydb"
)

// api is the loyalty HTTP API: the service's view of each customer's
// points.
type api struct {
	pool *pgxpool.Pool
	log  *slog.Logger
}

// routes adds the service's endpoints to r.
func (s *api) routes(r chi.Router) {
	r.Get("/customers/{customerId}/points", s.handlePointsGet)
}

// pointsJSON is what GET /customers/{customerId}/points answers.
type pointsJSON struct {
	CustomerID string        `json:"customerId"`
	Points     int64         `json:"points"`  // the sum of the awards' points
	Awards     []awardJSON   `json:"awards"`  // given, oldest first
	Pending    []pendingJSON `json:"pending"` // waiting for their timer, oldest first
}

// awardJSON is an award given.
type awardJSON struct {
	OrderID   uuid.UUID `json:"orderId"`
	Points    int64     `json:"points"`
	AwardedAt time.Time `json:"awardedAt"`
}

// pendingJSON is an award due later, unless the order is cancelled first.
type pendingJSON struct {
	OrderID uuid.UUID `json:"orderId"`
	Points  int64     `json:"points"`
	DueAt   time.Time `json:"dueAt"`
}

// handlePointsGet serves GET /customers/{customerId}/points. A customer
// loyalty has never heard of has 0 points and no awards, like any new
// customer: the answer is 200, not 404. A {customerId} no order could
// carry (contract.CustomerID: NUL, invalid UTF-8, over 64 characters) is
// a 422 naming it; one that is not valid percent-encoding a 400. The
// points are the sum of the awards listed, read in one query, so they
// always add up.
func (s *api) handlePointsGet(w http.ResponseWriter, r *http.Request) {
	customerID, err := httpserver.PathValue(r, "customerId", contract.CustomerID.Check)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := loyaltydb.New(s.pool).ListAwards(r.Context(), customerID)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list awards: %w", err))
		return
	}
	out := pointsJSON{CustomerID: customerID, Awards: []awardJSON{}, Pending: []pendingJSON{}}
	for _, a := range rows {
		switch a.State {
		case stateAwarded:
			out.Points += a.Points
			out.Awards = append(out.Awards, awardJSON{OrderID: a.OrderID, Points: a.Points, AwardedAt: a.AwardedAt.Time.UTC()})
		case statePending:
			out.Pending = append(out.Pending, pendingJSON{OrderID: a.OrderID, Points: a.Points, DueAt: a.DueAt.Time.UTC()})
		}
	}
	httpserver.WriteJSON(w, http.StatusOK, out)
}

// writeError answers err as application/problem+json. Only server errors
// are logged: the rest are the client's to see.
func (s *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var p httpserver.Problem
	var in *httpserver.InputError
	switch {
	case errors.As(err, &in):
		p = in.Problem()
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		p.Status, p.Title = 499, "Client closed request"
	default:
		httpserver.WriteServerError(w, r, s.log, err)
		return
	}
	httpserver.WriteProblem(w, r, p)
}
