package warehouse

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

// newEdge serves warehouse's routes, 1000 units per unseen SKU.
func newEdge(t testing.TB) *servicetest.Edge {
	return servicetest.NewEdge(t, serviceName, migrations, func(pool *pgxpool.Pool, log *slog.Logger) func(chi.Router) {
		return (&api{pool: pool, defaultStock: 1000, log: log}).routes
	})
}

// TestInventoryRefusesHostileInput sends what a hostile client sends to
// GET and PUT /inventory/{sku} and GET /shipments/{orderId}: never a 5xx,
// a SKU no order could carry is a 422 naming "sku", an order id that is
// not a UUID a 404, and nothing is written.
func TestInventoryRefusesHostileInput(t *testing.T) {
	t.Parallel()
	e := newEdge(t)
	inventory := func(v string) string { return "/inventory/" + url.PathEscape(v) }
	sku := func(v string) (int, string) {
		switch {
		case v == "": // no {sku} at all: no such route
			return http.StatusNotFound, ""
		case contract.SKU.Check(v) != nil:
			return http.StatusUnprocessableEntity, "sku"
		}
		return http.StatusOK, "" // "a/b", "%": odd, but SKUs an order may carry
	}
	e.EachHostile(t, http.MethodGet, inventory, "", sku)
	e.EachHostile(t, http.MethodPut, inventory, `{"available":1}`, sku, "stock")
	e.EachHostile(t, http.MethodGet, func(v string) string { return "/shipments/" + url.PathEscape(v) }, "",
		func(string) (int, string) { return http.StatusNotFound, "" })
}

func TestInventoryPutRefusesHostileBody(t *testing.T) {
	t.Parallel()
	e := newEdge(t)
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"negative", `{"available":-1}`, 422},
		{"over a billion", `{"available":1000000001}`, 422},
		{"beyond int64", `{"available":99999999999999999999}`, 422},
		{"int64 max", `{"available":9223372036854775807}`, 422},
		{"fraction", `{"available":1.5}`, 422},
		{"exponent", `{"available":1e3}`, 422},
		{"string", `{"available":"7"}`, 422},
		{"null", `{"available":null}`, 422},
		{"unknown field with NUL", `{"available":1,"x\u0000":1}`, 422},
		{"invalid UTF-8", "{\"available\":1,\"\xff\":1}", 400},
		{"invalid UTF-8 in a string", "{\"available\":\"\xc3(\"}", 400},
		{"lone surrogate", `{"available":1,"\ud800":1}`, 400},
		{"not an object", `7`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.Do(t, http.MethodPut, "/inventory/SKU-1", tc.body)
			if a.Status != tc.status {
				t.Fatalf("PUT %s: %d %s, want %d", tc.body, a.Status, a.Body, tc.status)
			}
			if p := a.Problem(t); tc.status == 422 && len(p.Errors) == 0 {
				t.Errorf("422 naming no field: %s", a.Body)
			}
			if n := e.Rows(t, "stock"); n != 0 {
				t.Errorf("%d stock rows after a refused PUT", n)
			}
		})
	}
	a := e.Do(t, http.MethodPut, "/inventory/SKU-1", `{"available":1000000000}`)
	var inv inventoryJSON
	if err := json.Unmarshal(a.Body, &inv); a.Status != http.StatusOK || err != nil || inv.Available != maxAvailable {
		t.Errorf("PUT a billion: %d %s", a.Status, a.Body)
	}
}
