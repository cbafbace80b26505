package orders

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/service"
)

// TestOpenAPI holds openapi.json to the running service: its routes, and
// the answer to each case (servicetest.CheckOpenAPI), and its security
// to a second run with HTTP_AUTH on. Two orders are
// placed first, to be read and cancelled; the second one's payment fails,
// so cancelling it is a 409.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	broker := kafkatest.Start(t)
	cfg := Config{Config: servicetest.Config(t, broker)}
	testenv.Start(t, func(ctx context.Context) error { return Run(ctx, cfg, slog.New(slog.NewTextHandler(t.Output(), nil))) })
	base := "http://" + cfg.HTTPAddr
	servicetest.WaitReady(t, base)
	place := func() string {
		t.Helper()
		r := do(t, http.MethodPost, base+"/orders", validBody, nil)
		var o orderJSON
		if r.status != http.StatusCreated || json.Unmarshal(r.body, &o) != nil {
			t.Fatalf("POST /orders: %d %s", r.status, r.body)
		}
		return o.ID.String()
	}
	open, failed := place(), place()
	servicetest.NewProducer(t, broker).Produce(t, contract.Sample("PaymentFailed", failed))
	servicetest.WaitJSON(t, base+"/orders/"+failed, func(o orderDetailJSON) bool { return o.Status == statusPaymentFailed })

	key := map[string]string{IdempotencyKeyHeader: "openapi-" + uuid.NewString()}
	cancel := func(id string) string { return "/orders/" + id + "/cancel" }
	authBase := servicetest.StartWithAuth(t, func(ctx context.Context, c service.Config) error {
		return Run(ctx, Config{Config: c}, slog.New(slog.DiscardHandler))
	})
	servicetest.CheckOpenAPI(t, servicetest.OpenAPITest{
		Service:     serviceName,
		Document:    OpenAPI,
		Routes:      (&api{}).routes,
		BaseURL:     base,
		AuthBaseURL: authBase,
		Cases: []servicetest.OpenAPICase{
			{Method: http.MethodPost, Target: "/orders", Example: "placed", Header: key, Status: http.StatusCreated},
			{Method: http.MethodPost, Target: "/orders", Example: "placed", Header: key, Status: http.StatusCreated}, // replayed
			{Method: http.MethodPost, Target: "/orders", Example: "declined", Header: key, Status: http.StatusUnprocessableEntity},
			{Method: http.MethodPost, Target: "/orders", Example: "declined", Status: http.StatusCreated},
			{Method: http.MethodPost, Target: "/orders", Body: `{"customerId":"c-42"`, Status: http.StatusBadRequest},
			{Method: http.MethodPost, Target: "/orders", Example: "placed",
				Header: map[string]string{IdempotencyKeyHeader: strings.Repeat("k", 256)}, Status: http.StatusBadRequest},
			{Method: http.MethodPost, Target: "/orders", Body: strings.Repeat(" ", 65<<10) + validBody, Status: http.StatusRequestEntityTooLarge},
			{Method: http.MethodPost, Target: "/orders", Example: "placed",
				Header: map[string]string{"Content-Type": "text/plain"}, Status: http.StatusUnsupportedMediaType},
			{Method: http.MethodPost, Target: "/orders",
				Body:   `{"customerId":"","email":"nope","items":[],"currency":"eur","paymentToken":"tok_visa"}`,
				Status: http.StatusUnprocessableEntity},

			{Method: http.MethodGet, Target: "/orders/" + open, Status: http.StatusOK},
			{Method: http.MethodGet, Target: "/orders/" + uuid.NewString(), Status: http.StatusNotFound},
			{Method: http.MethodGet, Target: "/orders/not-a-uuid", Status: http.StatusNotFound},

			{Method: http.MethodPost, Target: cancel(open), Example: "reason", Status: http.StatusAccepted},
			{Method: http.MethodPost, Target: cancel(open), Status: http.StatusAccepted}, // again, and with no body
			{Method: http.MethodPost, Target: cancel(uuid.NewString()), Status: http.StatusNotFound},
			{Method: http.MethodPost, Target: cancel("not-a-uuid"), Status: http.StatusNotFound},
			{Method: http.MethodPost, Target: cancel(failed), Status: http.StatusConflict},
			{Method: http.MethodPost, Target: cancel(open), Body: `{"reason":`, Status: http.StatusBadRequest},
			{Method: http.MethodPost, Target: cancel(open), Body: strings.Repeat(" ", 5<<10) + `{}`, Status: http.StatusRequestEntityTooLarge},
			{Method: http.MethodPost, Target: cancel(open), Example: "reason",
				Header: map[string]string{"Content-Type": "text/plain"}, Status: http.StatusUnsupportedMediaType},
			{Method: http.MethodPost, Target: cancel(open), Body: `{"reason":"","why":"?"}`, Status: http.StatusUnprocessableEntity},
		},
		Unprovoked: map[string]string{
			"POST /orders 503":             "needs PostgreSQL away while the service runs (outage_test.go provokes it)",
			"GET /orders/{id} 503":         "needs PostgreSQL away while the service runs",
			"POST /orders/{id}/cancel 503": "needs PostgreSQL away while the service runs",
		},
	})
}
