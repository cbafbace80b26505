package payments

import (
	"context"
	"log/slog"
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/pkg/service"
)

// TestOpenAPI holds openapi.json to the running service: its routes, and
// the answer to each case (servicetest.CheckOpenAPI), and its security
// to a second run with HTTP_AUTH on.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := uuid.NewString()
	b.produce(t, placed(id, "tok_visa", 2500))
	b.waitPayment(t, id, func(p paymentJSON) bool { return p.Status == statusCaptured })
	authBase := servicetest.StartWithAuth(t, func(ctx context.Context, c service.Config) error {
		return Run(ctx, Config{Config: c}, slog.New(slog.DiscardHandler))
	})
	servicetest.CheckOpenAPI(t, servicetest.OpenAPITest{
		Service:     serviceName,
		Document:    OpenAPI,
		Routes:      (&api{}).routes,
		BaseURL:     b.base,
		AuthBaseURL: authBase,
		Cases: []servicetest.OpenAPICase{
			{Method: http.MethodGet, Target: "/payments/" + id, Status: http.StatusOK},
			{Method: http.MethodGet, Target: "/payments/" + uuid.NewString(), Status: http.StatusNotFound},
			{Method: http.MethodGet, Target: "/payments/not-a-uuid", Status: http.StatusNotFound},
		},
		Unprovoked: map[string]string{
			"GET /payments/{orderId} 503": "needs PostgreSQL away while the service runs",
		},
	})
}
