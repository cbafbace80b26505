package orders

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/httpserver"
)

// With HTTP_AUTH=on the running service refuses an order without
// credentials (401, nothing written) and takes it with an API key; reads
// and the probes stay open unless configured otherwise.
func TestAuthOnTheRunningService(t *testing.T) {
	t.Parallel()
	const key = "k-0123456789abcdef-orders"
	env := config.FromLookup(func(name string) (string, bool) {
		v, ok := map[string]string{"HTTP_AUTH": "on", "HTTP_API_KEYS": key}[name]
		return v, ok
	})
	auth := httpserver.AuthFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	shared := servicetest.Config(t, kafkatest.Start(t))
	shared.Auth = auth
	cfg := Config{Config: shared}
	testenv.Start(t, func(ctx context.Context) error { return Run(ctx, cfg, slog.New(slog.DiscardHandler)) })
	base := "http://" + cfg.HTTPAddr
	servicetest.WaitReady(t, base)

	body := `{"customerId":"c-1","email":"ada@example.com","items":[{"sku":"sku-1","quantity":1,"unitPriceCents":100}],"currency":"EUR","paymentToken":"tok_visa"}`
	post := func(headers map[string]string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, base+"/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post(nil); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("POST /orders without credentials: %s, WWW-Authenticate %q; want 401 with the header", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	if resp := post(map[string]string{"X-API-Key": "wrong-key-0123456789"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /orders with a wrong key: %s, want 401", resp.Status)
	}
	pool := servicetest.Pool(t, shared)
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d orders (%v) after the refused requests, want 0", n, err)
	}
	resp := post(map[string]string{"X-API-Key": key})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /orders with the key: %s, want 201", resp.Status)
	}
	for _, path := range []string{resp.Header.Get("Location"), "/healthz", "/readyz", "/metrics"} {
		r, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s, want 200 (open by default)", path, r.Status)
		}
	}
}
