package devstack

import (
	"net/http"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/internal/testenv"
)

// With Kafka security on (SASL/SCRAM over TLS), every client authenticates
// and each service is held to its ACLs, and with HTTP auth on a write
// needs its key; the pipeline still works end to end: an order is paid, shipped, awarded its points and emailed. No
// secret set for the run (Kafka, PostgreSQL and HTTP passwords, keys)
// appears in the logs.
func TestPipelineWithKafkaACLs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole stack")
	}
	env := map[string]string{
		"WAREHOUSE_SHIP_DELAY": "100ms",
		"LOYALTY_AWARD_DELAY":  "500ms",
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
		"KAFKA_SASL_USER":      "admin",
		"KAFKA_SASL_PASSWORD":  "sekret-admin-kafka",
		"KAFKA_TLS":            "on",
		// Secrets of the other layers, set so the logs can be searched
		// for them too; writes need an API key.
		"PAYMENTS_POSTGRES_PASSWORD": "sekret-payments-postgres",
		"HTTP_AUTH":                  "on",
		"HTTP_API_KEYS":              "sekret-api-key-0123456789abcdef",
		"HTTP_JWT_HMAC_SECRET":       "sekret-hmac-0123456789abcdef0123456789",
	}
	for _, s := range registry.Services {
		env[strings.ToUpper(s.Name)+"_KAFKA_PASSWORD"] = "sekret-" + s.Name + "-kafka"
	}
	logs := &testenv.SyncBuffer{}
	s := startStackOn(t, env, stackDatabases(t), 4, func(o *Options) { o.Logs = logs })
	if resp, body := send(t, http.MethodPost, s["orders"]+"/orders", newOrder("tok_visa", 1, 100)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /orders without a key: %s %s, want 401", resp.Status, body)
	}
	id := s.place(t, newOrder("tok_visa", 2, 1250), "X-API-Key", env["HTTP_API_KEYS"])
	s.waitOrder(t, id, func(v orderView) bool { return v.Status == "shipped" && v.PointsAwarded == 25 })
	s.waitEmails(t, id, "confirmation:sent shipped:sent")
	if strings.Contains(logs.String(), "sekret") {
		i := strings.Index(logs.String(), "sekret")
		t.Errorf("a secret is in the logs: ...%s...", logs.String()[max(0, i-200):i+30])
	}
	for _, want := range []string{`"sasl":"SCRAM-SHA-512"`, `"user":"payments"`, `"tls":true`, "speaks TLS"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the logs do not say %s", want)
		}
	}
}

// With HTTP auth on, the banner's curl example carries the shape of the
// header a write needs, and no key.
func TestBannerNamesTheKeyHeader(t *testing.T) {
	var open, locked strings.Builder
	listening := [][2]string{{"orders", ":8080"}, {"email", ":8084"}}
	printBanner(&open, listening, nil, 1, "")
	printBanner(&locked, listening, nil, 1, " -H 'X-API-Key: <one of HTTP_API_KEYS>'")
	if strings.Contains(open.String(), "X-API-Key") {
		t.Errorf("the banner of an open stack asks for a key:\n%s", open.String())
	}
	if !strings.Contains(locked.String(), "-H 'Content-Type: application/json' -H 'X-API-Key: <one of HTTP_API_KEYS>' -d") {
		t.Errorf("the banner of a stack with HTTP auth on does not show the key header:\n%s", locked.String())
	}
}
