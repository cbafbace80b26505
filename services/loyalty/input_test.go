package loyalty

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/pkg/events/contract"
)

func newEdge(t testing.TB) *servicetest.Edge {
	return servicetest.NewEdge(t, serviceName, migrations, func(pool *pgxpool.Pool, log *slog.Logger) func(chi.Router) {
		return (&api{pool: pool, log: log}).routes
	})
}

func pointsPath(id string) string { return "/customers/" + url.PathEscape(id) + "/points" }

// TestPointsRefusesHostileCustomerID asks for the points of customer ids
// no order could carry: each is a 422 naming customerId, never a 5xx, and
// writes nothing.
func TestPointsRefusesHostileCustomerID(t *testing.T) {
	t.Parallel()
	newEdge(t).EachHostile(t, http.MethodGet, pointsPath, "", func(v string) (int, string) {
		if contract.CustomerID.Check(v) != nil {
			return http.StatusUnprocessableEntity, "customerId"
		}
		return http.StatusOK, ""
	}, "awards", "cancellations")
}

// FuzzLoyaltyHTTP asks for any customer's points over a real database: no
// answer is a 5xx, every refusal is problem+json, and an answered id is a
// valid customer id, echoed unaltered.
func FuzzLoyaltyHTTP(f *testing.F) {
	for _, v := range servicetest.HostileValues {
		f.Add(v)
	}
	e := newEdge(f)
	f.Fuzz(func(t *testing.T, id string) {
		rec := e.Serve(t, http.MethodGet, pointsPath(id), nil)
		if rec.Code != http.StatusOK {
			return
		}
		var p pointsJSON
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.CustomerID != id || contract.CustomerID.Check(id) != nil {
			t.Fatalf("customer %q: %s", id, rec.Body)
		}
	})
}
