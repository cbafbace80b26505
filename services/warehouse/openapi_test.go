package warehouse

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/service"
)

// TestOpenAPI holds openapi.json to the running service: its routes, and
// the answer to each case (servicetest.CheckOpenAPI), and its security
// to a second run with HTTP_AUTH on. The shipment is
// still scheduled when asked for (an hour's ship delay). The service
// migrates its own database, as in production.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	broker := kafkatest.Start(t)
	cfg := Config{Config: servicetest.Config(t, broker), DefaultStock: 1000, ShipDelay: time.Hour}
	testenv.Start(t, func(ctx context.Context) error { return Run(ctx, cfg, slog.New(slog.NewTextHandler(t.Output(), nil))) })
	base := "http://" + cfg.HTTPAddr
	servicetest.WaitReady(t, base)
	id, sku := newID(), newSKU("openapi")
	servicetest.NewProducer(t, broker).Produce(t, captured(id, item(sku, 2)))
	servicetest.WaitJSON(t, base+"/shipments/"+id, func(s shipmentJSON) bool { return s.Status == statusScheduled })
	long := strings.Repeat("s", 65)
	authBase := servicetest.StartWithAuth(t, func(ctx context.Context, c service.Config) error {
		return Run(ctx, Config{Config: c, DefaultStock: 1000, ShipDelay: time.Hour}, slog.New(slog.DiscardHandler))
	})
	servicetest.CheckOpenAPI(t, servicetest.OpenAPITest{
		Service:     serviceName,
		Document:    OpenAPI,
		Routes:      (&api{}).routes,
		BaseURL:     base,
		AuthBaseURL: authBase,
		Cases: []servicetest.OpenAPICase{
			{Method: http.MethodGet, Target: "/shipments/" + id, Status: http.StatusOK},
			{Method: http.MethodGet, Target: "/shipments/" + newID(), Status: http.StatusNotFound},
			{Method: http.MethodGet, Target: "/shipments/not-a-uuid", Status: http.StatusNotFound},
			{Method: http.MethodGet, Target: "/inventory/" + sku, Status: http.StatusOK},
			{Method: http.MethodGet, Target: "/inventory/" + long, Status: http.StatusUnprocessableEntity},
			{Method: http.MethodPut, Target: "/inventory/" + sku, Example: "seed", Status: http.StatusOK},
			{Method: http.MethodPut, Target: "/inventory/" + sku, Body: `{"available":10`, Status: http.StatusBadRequest},
			{Method: http.MethodPut, Target: "/inventory/" + sku, Body: strings.Repeat(" ", 5<<10) + `{"available":1}`, Status: http.StatusRequestEntityTooLarge},
			{Method: http.MethodPut, Target: "/inventory/" + sku, Body: `{"available":-1,"colour":"red"}`, Status: http.StatusUnprocessableEntity},
			{Method: http.MethodPut, Target: "/inventory/" + long, Example: "seed", Status: http.StatusUnprocessableEntity},
		},
		Unprovoked: map[string]string{
			"GET /shipments/{orderId} 503": "needs PostgreSQL away while the service runs",
			"GET /inventory/{sku} 503":     "needs PostgreSQL away while the service runs",
			"PUT /inventory/{sku} 503":     "needs PostgreSQL away while the service runs",
		},
	})
}
