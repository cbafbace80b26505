package email

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/services/email/internal/emaildb"
)

// api is the email service's HTTP API: the emails of an order.
type api struct {
	pool *pgxpool.Pool
	log  *slog.Logger
}

func (s *api) routes(r chi.Router) {
	r.Get("/emails", s.handleEmailsGet)
}

// emailJSON is an email as GET /emails answers it.
type emailJSON struct {
	TaskID    uuid.UUID  `json:"taskId"`
	OrderID   uuid.UUID  `json:"orderId"`
	Kind      string     `json:"kind"`
	To        string     `json:"to"`
	Subject   string     `json:"subject"`
	Status    string     `json:"status"` // queued | sent | dead
	Attempts  int32      `json:"attempts"`
	LastError string     `json:"lastError"`
	CreatedAt time.Time  `json:"createdAt"`
	SentAt    *time.Time `json:"sentAt"`
}

var errBadOrderID = errors.New("orderId must be a UUID")

// handleEmailsGet serves GET /emails?orderId=: the order's emails, oldest
// first; an empty list for an order with none. Anything but one orderId
// that is a UUID is a 400, whatever bytes it holds: it never reaches the
// database.
func (s *api) handleEmailsGet(w http.ResponseWriter, r *http.Request) {
	ids := r.URL.Query()["orderId"]
	if len(ids) != 1 {
		s.writeError(w, r, errBadOrderID)
		return
	}
	id, err := uuid.Parse(ids[0])
	if err != nil {
		s.writeError(w, r, errBadOrderID)
		return
	}
	rows, err := emaildb.New(s.pool).ListEmails(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]emailJSON, 0, len(rows))
	for _, e := range rows {
		j := emailJSON{
			TaskID: e.TaskID, OrderID: e.OrderID, Kind: e.Kind, To: e.ToAddr, Subject: e.Subject,
			Status: e.Status, Attempts: e.Attempts, LastError: e.LastError, CreatedAt: e.CreatedAt.UTC(),
		}
		if e.SentAt.Valid {
			t := e.SentAt.Time.UTC()
			j.SentAt = &t
		}
		out = append(out, j)
	}
	httpserver.WriteJSON(w, http.StatusOK, out)
}

func (s *api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var p httpserver.Problem
	switch {
	case errors.Is(err, errBadOrderID):
		p.Status, p.Detail = http.StatusBadRequest, "query parameter orderId must be one order's UUID"
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		p.Status, p.Title = 499, "Client closed request"
	default:
		httpserver.WriteServerError(w, r, s.log, err)
		return
	}
	httpserver.WriteProblem(w, r, p)
}
