package payments

import (
	"log/slog"
	"net/http"
	"net/url"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/servicetest"
)

func newEdge(t testing.TB) *servicetest.Edge {
	return servicetest.NewEdge(t, serviceName, migrations, func(pool *pgxpool.Pool, log *slog.Logger) func(chi.Router) {
		return (&api{pool: pool, log: log}).routes
	})
}

func paymentPath(id string) string { return "/payments/" + url.PathEscape(id) }

// TestPaymentRefusesHostileOrderID asks for payments by ids that are not
// UUIDs: each is a 404 problem, as an unknown order is, never a 5xx, and
// writes nothing.
func TestPaymentRefusesHostileOrderID(t *testing.T) {
	t.Parallel()
	newEdge(t).EachHostile(t, http.MethodGet, paymentPath, "",
		func(string) (int, string) { return http.StatusNotFound, "" }, "payments", "order_flags")
}

// FuzzPaymentsHTTP asks for any order's payment over a real database.
func FuzzPaymentsHTTP(f *testing.F) {
	newEdge(f).FuzzID(f, paymentPath, http.StatusNotFound)
}
