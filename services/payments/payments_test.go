package payments

import (
	"strings"
	"testing"

	"github.com/orderflow/orderflow/pkg/service"
)

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("PAYMENTS_HTTP_ADDR", "")
	t.Setenv("KAFKA_BROKERS", "")
	t.Setenv("FRAUD_LIMIT_CENTS", "")
	t.Setenv("OUTBOX_RETENTION", "")
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":8081" || cfg.Database != "orderflow_payments" || cfg.FraudLimitCents != 1_000_000 ||
		len(cfg.Brokers) != 1 || cfg.Brokers[0] != service.DefaultBroker || cfg.MaxConns != service.DefaultMaxConns {
		t.Errorf("defaults: %+v", cfg)
	}

	t.Setenv("FRAUD_LIMIT_CENTS", "lots")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "FRAUD_LIMIT_CENTS") {
		t.Errorf("FRAUD_LIMIT_CENTS=lots: %v, want an error naming it", err)
	}
	t.Setenv("FRAUD_LIMIT_CENTS", "-1")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "FRAUD_LIMIT_CENTS") {
		t.Errorf("FRAUD_LIMIT_CENTS=-1: %v, want an error naming it", err)
	}
}
