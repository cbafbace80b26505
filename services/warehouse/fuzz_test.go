package warehouse

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/pkg/events/contract"
)

// FuzzWarehouseHTTP drives GET and PUT /inventory/{sku} and GET
// /shipments/{orderId} with any segment (escaped as a client sends it)
// and any body, over a real database. No answer is a 5xx, every refusal
// is problem+json, a refused PUT writes nothing, and an accepted PUT
// stored the SKU and the units as sent.
func FuzzWarehouseHTTP(f *testing.F) {
	for _, v := range servicetest.HostileValues {
		f.Add(v, []byte(`{"available":1}`))
	}
	for _, body := range []string{`{"available":-1}`, `{"available":1e3}`, `{"available":99999999999999999999}`,
		"{\"available\":1,\"\xff\":1}", `{"available":1,"\ud800":1}`, `{"available":1,"x\u0000":1}`, `null`, ``} {
		f.Add("SKU-1", []byte(body))
	}
	e := newEdge(f)
	f.Fuzz(func(t *testing.T, sku string, body []byte) {
		path := "/inventory/" + url.PathEscape(sku)
		e.Serve(t, http.MethodGet, path, nil)
		e.Serve(t, http.MethodGet, "/shipments/"+url.PathEscape(sku), nil)
		before := e.Rows(t, "stock")
		rec := e.Serve(t, http.MethodPut, path, body)
		if rec.Code != http.StatusOK {
			if after := e.Rows(t, "stock"); after != before {
				t.Fatalf("refused PUT %s %q wrote %d rows", path, body, after-before)
			}
			return
		}
		var sent struct{ Available int64 }
		if contract.SKU.Check(sku) != nil || json.Unmarshal(body, &sent) != nil || sent.Available < 0 || sent.Available > maxAvailable {
			t.Fatalf("PUT %s accepted %q", path, body)
		}
		var got inventoryJSON
		if err := json.Unmarshal(e.Serve(t, http.MethodGet, path, nil).Body.Bytes(), &got); err != nil ||
			got.SKU != sku || got.Available != sent.Available {
			t.Fatalf("after PUT %s %q: %+v, %v", path, body, got, err)
		}
	})
}
