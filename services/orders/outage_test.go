package orders

import (
	"net/http"
	"testing"

	"github.com/orderflow/orderflow/internal/pgtest"
)

// With the database away, POST /orders answers 503 with Retry-After, a
// problem a client can act on (send again, with the same Idempotency-Key),
// not a 500; once it is back the same request succeeds.
func TestDatabaseOutageAnswers503(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := map[string]string{"Idempotency-Key": "during-outage"}
	end := pgtest.Outage(t, b.pool.Config().ConnString())
	resp := b.post(t, validBody, key)
	if resp.status != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == "" {
		t.Fatalf("during the outage: status %d, Retry-After %q; body %s", resp.status, resp.header.Get("Retry-After"), resp.body)
	}
	resp.problem(t)
	end()
	if resp := b.post(t, validBody, key); resp.status != http.StatusCreated {
		t.Fatalf("after the outage: status %d; body %s", resp.status, resp.body)
	}
	if n := b.count(t, "orders"); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
}
