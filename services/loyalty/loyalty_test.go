package loyalty

import (
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/service"
)

func TestConfigFromEnv(t *testing.T) {
	for _, v := range []string{"LOYALTY_HTTP_ADDR", "LOYALTY_AWARD_DELAY", "KAFKA_BROKERS", "OUTBOX_RETENTION"} {
		t.Setenv(v, "")
	}
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "loyalty" || cfg.HTTPAddr != ":8083" || cfg.Database != "orderflow_loyalty" ||
		cfg.AwardDelay != 10*time.Minute || len(cfg.Brokers) != 1 || cfg.Brokers[0] != service.DefaultBroker {
		t.Errorf("defaults: %+v", cfg)
	}

	t.Setenv("LOYALTY_AWARD_DELAY", "90s")
	t.Setenv("LOYALTY_HTTP_ADDR", "127.0.0.1:9083")
	if cfg, err := ConfigFromEnv(); err != nil || cfg.AwardDelay != 90*time.Second || cfg.HTTPAddr != "127.0.0.1:9083" {
		t.Errorf("LOYALTY_AWARD_DELAY=90s LOYALTY_HTTP_ADDR=127.0.0.1:9083: %+v, %v", cfg, err)
	}

	for _, bad := range []string{"soon", "0", "0s", "-5m", "10"} {
		t.Setenv("LOYALTY_AWARD_DELAY", bad)
		_, err := ConfigFromEnv()
		if err == nil || !strings.Contains(err.Error(), "LOYALTY_AWARD_DELAY") || strings.Contains(err.Error(), "\n") {
			t.Errorf("LOYALTY_AWARD_DELAY=%q: %v, want one line naming it", bad, err)
		}
	}
}

func TestValidate(t *testing.T) {
	good := Config{}
	good.setDefaults()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Config){
		"LOYALTY_AWARD_DELAY": func(c *Config) { c.AwardDelay = -time.Second },
		"LOYALTY_HTTP_ADDR":   func(c *Config) { c.HTTPAddr = "" },
		"POSTGRES_URL":        func(c *Config) { c.PostgresURL = "mysql://db" },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v does not name it", name, err)
		}
	}
}

func TestPoints(t *testing.T) {
	for cents, want := range map[int64]int64{1: 0, 99: 0, 100: 1, 199: 1, 12_345: 123, 1_000_000: 10_000} {
		if got := points(cents); got != want {
			t.Errorf("points(%d) = %d, want %d", cents, got, want)
		}
	}
}
