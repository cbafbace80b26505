package loyalty

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/service"
)

// TestOpenAPI holds openapi.json to the running service: its routes, and
// the answer to each case (servicetest.CheckOpenAPI), and its security
// to a second run with HTTP_AUTH on. A customer with a
// pending award has every list of the answer filled in but awards: the
// hour's delay keeps it pending.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	b, base := setup(t, time.Hour)
	id := uuid.NewString()
	b.in.Produce(t, contract.Sample("PaymentCaptured", id))
	servicetest.WaitJSON(t, base+"/customers/c-1/points", func(p pointsJSON) bool { return len(p.Pending) == 1 })
	authBase := servicetest.StartWithAuth(t, func(ctx context.Context, c service.Config) error {
		return Run(ctx, Config{Config: c, AwardDelay: time.Hour}, slog.New(slog.DiscardHandler))
	})
	servicetest.CheckOpenAPI(t, servicetest.OpenAPITest{
		Service:     serviceName,
		Document:    OpenAPI,
		Routes:      (&api{}).routes,
		BaseURL:     base,
		AuthBaseURL: authBase,
		Cases: []servicetest.OpenAPICase{
			{Method: http.MethodGet, Target: "/customers/c-1/points", Status: http.StatusOK},
			{Method: http.MethodGet, Target: "/customers/never-seen/points", Status: http.StatusOK},
			{Method: http.MethodGet, Target: "/customers/" + strings.Repeat("c", 65) + "/points", Status: http.StatusUnprocessableEntity},
			{Method: http.MethodGet, Target: "/customers/a%00b/points", Status: http.StatusUnprocessableEntity},
		},
		Unprovoked: map[string]string{
			"GET /customers/{customerId}/points 503": "needs PostgreSQL away while the service runs",
		},
	})
}
