package warehouse

import (
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/service"
)

func TestConfigFromEnv(t *testing.T) {
	for _, v := range []string{"WAREHOUSE_HTTP_ADDR", "KAFKA_BROKERS", "OUTBOX_RETENTION", "WAREHOUSE_DEFAULT_STOCK", "WAREHOUSE_SHIP_DELAY"} {
		t.Setenv(v, "")
	}
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":8082" || cfg.Database != "orderflow_warehouse" || cfg.DefaultStock != 1000 ||
		cfg.ShipDelay != 2*time.Second || cfg.MaxConns != service.DefaultMaxConns {
		t.Errorf("defaults: %+v", cfg)
	}

	t.Setenv("WAREHOUSE_DEFAULT_STOCK", "0")
	t.Setenv("WAREHOUSE_SHIP_DELAY", "150ms")
	t.Setenv("WAREHOUSE_HTTP_ADDR", "127.0.0.1:9082")
	cfg, err = ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DefaultStock != 0 || cfg.ShipDelay != 150*time.Millisecond || cfg.HTTPAddr != "127.0.0.1:9082" {
		t.Errorf("set: %+v", cfg)
	}

	tests := []struct{ name, value string }{
		{"WAREHOUSE_DEFAULT_STOCK", "-1"},
		{"WAREHOUSE_DEFAULT_STOCK", "lots"},
		{"WAREHOUSE_DEFAULT_STOCK", "1.5"},
		{"WAREHOUSE_SHIP_DELAY", "0"},
		{"WAREHOUSE_SHIP_DELAY", "0s"},
		{"WAREHOUSE_SHIP_DELAY", "-1s"},
		{"WAREHOUSE_SHIP_DELAY", "soon"},
		{"WAREHOUSE_SHIP_DELAY", "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			t.Setenv("WAREHOUSE_DEFAULT_STOCK", "")
			t.Setenv("WAREHOUSE_SHIP_DELAY", "")
			t.Setenv(tt.name, tt.value)
			_, err := ConfigFromEnv()
			if err == nil || !strings.Contains(err.Error(), tt.name) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%v, want one line naming %s", err, tt.name)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := Config{DefaultStock: -1}
	cfg.setDefaults()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "WAREHOUSE_DEFAULT_STOCK") {
		t.Errorf("DefaultStock -1: %v", err)
	}
	cfg = Config{ShipDelay: -time.Second}
	cfg.setDefaults()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "WAREHOUSE_SHIP_DELAY") {
		t.Errorf("ShipDelay -1s: %v", err)
	}
	cfg = Config{}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil || cfg.ShipDelay != DefaultShipDelay || cfg.HTTPAddr != DefaultHTTPAddr {
		t.Errorf("zero config: %v %+v", err, cfg)
	}
}
