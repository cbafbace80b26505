package email

import (
	"log/slog"
	"net/http"
	"net/url"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/servicetest"
)

func newEdge(t testing.TB) *servicetest.Edge {
	return servicetest.NewEdge(t, serviceName, migrations, func(pool *pgxpool.Pool, log *slog.Logger) func(chi.Router) {
		return (&api{pool: pool, log: log}).routes
	})
}

func emailsPath(id string) string { return "/emails?orderId=" + url.QueryEscape(id) }

// TestEmailsRefusesHostileOrderID asks for emails by order ids that are
// not UUIDs, or by none or two: each is a 400 problem, never a 5xx, and
// writes nothing.
func TestEmailsRefusesHostileOrderID(t *testing.T) {
	t.Parallel()
	e := newEdge(t)
	e.EachHostile(t, http.MethodGet, emailsPath, "",
		func(string) (int, string) { return http.StatusBadRequest, "" }, "emails", "recipients", "waiting_emails")
	id := uuid.NewString()
	for target, want := range map[string]int{
		"/emails":               http.StatusBadRequest,
		"/emails?orderid=" + id: http.StatusBadRequest,
		"/emails?orderId=" + id + "&orderId=" + id: http.StatusBadRequest,
		emailsPath(id): http.StatusOK,
	} {
		if a := e.Do(t, http.MethodGet, target, ""); a.Status != want {
			t.Errorf("GET %s: %d %s, want %d", target, a.Status, a.Body, want)
		} else if want != http.StatusOK {
			a.Problem(t)
		}
	}
}

// FuzzEmailHTTP asks for any order's emails over a real database.
func FuzzEmailHTTP(f *testing.F) {
	newEdge(f).FuzzID(f, emailsPath, http.StatusBadRequest)
}
