package registry_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/orderflow/orderflow/internal/devstack"
	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/services/email"
	"github.com/orderflow/orderflow/services/loyalty"
	"github.com/orderflow/orderflow/services/orders"
	"github.com/orderflow/orderflow/services/payments"
	"github.com/orderflow/orderflow/services/warehouse"
)

const root = "../.."

// tools are the commands that are not services.
var tools = []string{"benchrun", "broker", "chaos", "eventdoc", "orderflow", "orderflowctl", "rebrand"}

// Every services/<name> and every cmd/<name> that is not a tool is a
// registered service, and every registered service has both.
func TestEveryServiceIsRegistered(t *testing.T) {
	for _, dir := range subdirs(t, "services") {
		if !slices.Contains(registry.Names(), dir) {
			t.Errorf("services/%s is not in internal/registry.Services: add it there (docs/new-service.md)", dir)
		}
	}
	for _, dir := range subdirs(t, "cmd") {
		if !slices.Contains(registry.Names(), dir) && !slices.Contains(tools, dir) {
			t.Errorf("cmd/%s is neither a registered service nor a tool of this test: register it, or add it to tools", dir)
		}
	}
	for _, s := range registry.Services {
		for _, dir := range []string{"services", "cmd"} {
			if _, err := os.Stat(filepath.Join(root, dir, s.Name)); err != nil {
				t.Errorf("registered service %s has no %s/%s", s.Name, dir, s.Name)
			}
		}
	}
}

// Every service that consumes runs the conformance suite
// (servicetest.RunConformance) in a test of its own package.
func TestEveryConsumerRunsTheConformanceSuite(t *testing.T) {
	for _, s := range registry.Services {
		if len(s.Consumes) == 0 {
			continue
		}
		dir := filepath.Join(root, "services", s.Name)
		tests, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
		if err != nil {
			t.Fatal(err)
		}
		runs := slices.ContainsFunc(tests, func(path string) bool {
			src, err := os.ReadFile(path)
			return err == nil && strings.Contains(string(src), "servicetest.RunConformance(")
		})
		if !runs {
			t.Errorf("services/%s consumes %v but no test of it runs servicetest.RunConformance", s.Name, s.Consumes)
		}
	}
}

// The services' own defaults and the dev stack follow the registry.
func TestServicesFollowTheRegistry(t *testing.T) {
	addrs := map[string]string{
		"orders":    orders.DefaultHTTPAddr,
		"payments":  payments.DefaultHTTPAddr,
		"warehouse": warehouse.DefaultHTTPAddr,
		"loyalty":   loyalty.DefaultHTTPAddr,
		"email":     email.DefaultHTTPAddr,
		// orderflowctl new service adds its service above this line.
	}
	for _, s := range registry.Services {
		addr, ok := addrs[s.Name]
		if !ok {
			t.Errorf("%s: this test does not know its package; add its DefaultHTTPAddr above", s.Name)
		} else if addr != s.Addr() {
			t.Errorf("%s: DefaultHTTPAddr %q, the registry says port %d", s.Name, addr, s.Port)
		}
	}
	if got := devstack.Services(); !slices.Equal(got, registry.Names()) {
		t.Errorf("the dev stack runs %v; the registry has %v, in that order", got, registry.Names())
	}
}

// Every consumed topic is emitted by a service; every topic has its one
// emitter; ports are distinct.
func TestTopicsAndPorts(t *testing.T) {
	emitter := map[string]string{}
	ports := map[int]string{}
	for _, s := range registry.Services {
		for _, topic := range s.Emits {
			if other, ok := emitter[topic]; ok {
				t.Errorf("topic %s emitted by %s and %s: a topic is named after its one emitter", topic, other, s.Name)
			}
			emitter[topic] = s.Name
		}
		if other, ok := ports[s.Port]; ok {
			t.Errorf("port %d taken by %s and %s", s.Port, other, s.Name)
		}
		ports[s.Port] = s.Name
	}
	for _, s := range registry.Services {
		for _, topic := range s.Consumes {
			if _, ok := emitter[topic]; !ok {
				t.Errorf("%s consumes %s, which no service emits", s.Name, topic)
			}
		}
		if d := s.DLQ(); d != "" && !slices.Contains(registry.Topics(), d) {
			t.Errorf("%s's dead-letter topic %s is not in Topics()", s.Name, d)
		}
	}
}

// sqlc.yaml generates each service's queries from its migrations.
func TestSQLCHasEveryService(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "sqlc.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		SQL []sqlcEntry `yaml:"sql"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, s := range registry.Services {
		if _, err := os.Stat(filepath.Join(root, "services", s.Name, "migrations")); err != nil {
			continue // no tables of its own
		}
		want := "services/" + s.Name + "/migrations"
		if !slices.ContainsFunc(cfg.SQL, func(e sqlcEntry) bool {
			return e.Schema == want || slices.Contains(asStrings(e.Schema), want)
		}) {
			t.Errorf("sqlc.yaml has no entry with schema %s", want)
		}
	}
}

// sqlcEntry is one sql entry of sqlc.yaml; schema is a path or a list.
type sqlcEntry struct {
	Schema any `yaml:"schema"`
}

func asStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func subdirs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}
