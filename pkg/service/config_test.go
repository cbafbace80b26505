package service_test

import (
	"strings"
	"testing"

	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/service"
)

func lookup(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestFromEnvDefaults(t *testing.T) {
	e := config.FromLookup(lookup(nil))
	c := service.FromEnv(e, "warehouse", ":8082")
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Name != "warehouse" || c.HTTPAddr != ":8082" || c.Database != "orderflow_warehouse" ||
		len(c.Brokers) != 1 || c.Brokers[0] != service.DefaultBroker || c.MaxConns != service.DefaultMaxConns ||
		c.OutboxRetention != service.DefaultOutboxRetention || c.ShutdownTimeout != service.DefaultShutdownTimeout {
		t.Fatalf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestFromEnvNamesEveryBadVariable(t *testing.T) {
	e := config.FromLookup(lookup(map[string]string{
		"WAREHOUSE_HTTP_ADDR": "",
		"POSTGRES_URL":        "mysql://db",
		"OUTBOX_RETENTION":    "a week",
		"KAFKA_BROKERS":       "k1:9092,k2:9092",
	}))
	c := service.FromEnv(e, "warehouse", ":8082")
	err := e.Err()
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{"POSTGRES_URL", "OUTBOX_RETENTION"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}
	if len(c.Brokers) != 2 {
		t.Errorf("brokers %v", c.Brokers)
	}
}

func TestValidate(t *testing.T) {
	good := service.Config{}
	good.SetDefaults("loyalty", ":8083")
	for name, mutate := range map[string]func(*service.Config){
		"LOYALTY_HTTP_ADDR": func(c *service.Config) { c.HTTPAddr = "" },
		"POSTGRES_URL":      func(c *service.Config) { c.PostgresURL = "http://x" },
		"KAFKA_BROKERS":     func(c *service.Config) { c.Brokers = nil },
		"OUTBOX_RETENTION":  func(c *service.Config) { c.OutboxRetention = -1 },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v does not name it", name, err)
		}
	}
}

func TestFromEnvDatabasePrefix(t *testing.T) {
	e := config.FromLookup(lookup(map[string]string{"DATABASE_PREFIX": "orderflow_chaos_"}))
	if c := service.FromEnv(e, "payments", ":8081"); e.Err() != nil || c.Database != "orderflow_chaos_payments" {
		t.Errorf("database %q, %v; want orderflow_chaos_payments", c.Database, e.Err())
	}
	e = config.FromLookup(lookup(map[string]string{"DATABASE_PREFIX": "Bad-Prefix", "POSTGRES_MAX_CONNS": "0"}))
	service.FromEnv(e, "payments", ":8081")
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "DATABASE_PREFIX") || !strings.Contains(err.Error(), "POSTGRES_MAX_CONNS") {
		t.Errorf("bad prefix and pool size: %v", err)
	}
	e = config.FromLookup(lookup(map[string]string{"POSTGRES_MAX_CONNS": "6"}))
	if c := service.FromEnv(e, "payments", ":8081"); e.Err() != nil || c.MaxConns != 6 {
		t.Errorf("pool size %d, %v; want 6", c.MaxConns, e.Err())
	}
	e = config.FromLookup(lookup(map[string]string{"POSTGRES_MAX_CONNS": "6", "PAYMENTS_POSTGRES_MAX_CONNS": "9"}))
	if c := service.FromEnv(e, "payments", ":8081"); e.Err() != nil || c.MaxConns != 9 {
		t.Errorf("payments pool size %d, %v; want its own 9 over POSTGRES_MAX_CONNS", c.MaxConns, e.Err())
	}
	if c := service.FromEnv(e, "orders", ":8080"); e.Err() != nil || c.MaxConns != 6 {
		t.Errorf("orders pool size %d, %v; want POSTGRES_MAX_CONNS's 6", c.MaxConns, e.Err())
	}
	e = config.FromLookup(lookup(map[string]string{"PAYMENTS_POSTGRES_MAX_CONNS": "0"}))
	service.FromEnv(e, "payments", ":8081")
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "PAYMENTS_POSTGRES_MAX_CONNS") {
		t.Errorf("bad payments pool size: %v", err)
	}
	if c := service.FromEnv(config.FromLookup(lookup(nil)), "payments", ":8081"); c.MaxConns != service.DefaultMaxConns {
		t.Errorf("default pool size %d, want %d", c.MaxConns, service.DefaultMaxConns)
	}
}
