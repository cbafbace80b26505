package email

import (
	"net/http"
	"testing"

	"github.com/orderflow/orderflow/internal/servicetest"
)

// TestOpenAPI holds openapi.json to the running service: its routes, and
// the answer to each case (servicetest.CheckOpenAPI), with an order whose
// confirmation was sent; and its security to a second run with HTTP_AUTH
// on.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id := newID()
	b.in.Produce(t, captured(id, "ada@example.com"))
	b.emails(t, id, func(es []emailJSON) bool { return len(es) == 1 && es[0].Status == "sent" })
	authBase := setup(t, func(c *Config) { c.Auth = servicetest.OpenAPIAuth(t) }).base
	servicetest.CheckOpenAPI(t, servicetest.OpenAPITest{
		Service:     serviceName,
		Document:    OpenAPI,
		Routes:      (&api{}).routes,
		BaseURL:     b.base,
		AuthBaseURL: authBase,
		Cases: []servicetest.OpenAPICase{
			{Method: http.MethodGet, Target: "/emails?orderId=" + id, Status: http.StatusOK},
			{Method: http.MethodGet, Target: "/emails?orderId=" + newID(), Status: http.StatusOK},
			{Method: http.MethodGet, Target: "/emails", Status: http.StatusBadRequest},
			{Method: http.MethodGet, Target: "/emails?orderId=not-a-uuid", Status: http.StatusBadRequest},
			{Method: http.MethodGet, Target: "/emails?orderId=" + id + "&orderId=" + id, Status: http.StatusBadRequest},
		},
		Unprovoked: map[string]string{
			"GET /emails 503": "needs PostgreSQL away while the service runs",
		},
	})
}
