// Package deploy holds the container setup behind `make up`, `make down` and
// `make deps`: compose.yaml, the Dockerfile every service is built with,
// prometheus.yml with its alert rules, Grafana's provisioning and dashboards.
// It has no Go code of its own.
//
// The test checks those files against each other, the Makefile, the
// registry's services and ports and the Go code, because the machines that run `make test` have no
// Docker engine and cannot start the stack. This file only reads files and
// the service registry (internal/registry): it does not build or import
// the services. observability_test.go checks the
// Grafana dashboards and the Prometheus alert rules (alerts.yml, tested by
// alerts_test.yml with promtool); its TestQueriesUseExportedMetrics does
// start the services, in-process (livestack_test.go), to check every metric
// they use against a live /metrics.
package deploy

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/events/kafka"
)

// Paths, relative to this directory (go test runs in it).
const (
	repoRoot       = ".."
	composeFile    = "compose.yaml"
	dockerfileFile = "Dockerfile"
	prometheusFile = "prometheus.yml"
	datasourceFile = "grafana/provisioning/datasources/prometheus.yml"
)

// designPorts are the registry's services and ports: every service built
// from the Dockerfile must be one of these and serve, and publish, its
// port, and every one of these must be in compose.
var designPorts = func() map[string]string {
	m := map[string]string{}
	for _, s := range registry.Services {
		m[s.Name] = strconv.Itoa(s.Port)
	}
	return m
}()

// requiredEnv lists the docs/design.md variables a service container must set
// because their defaults are wrong inside a container: localhost, or an
// embedded broker or mail directory that only the dev stack provides. Every
// service uses PostgreSQL and Kafka; email also RabbitMQ and SMTP.
func requiredEnv(service string) []string {
	vars := []string{"POSTGRES_URL", "KAFKA_BROKERS"}
	if service == "email" {
		vars = append(vars, "AMQP_URL", "SMTP_ADDR")
	}
	return vars
}

// --- compose.yaml model -----------------------------------------------------

type composeSpec struct {
	Services map[string]*service `yaml:"services"`
	Volumes  map[string]any      `yaml:"volumes"`
}

type service struct {
	Image       string       `yaml:"image"`
	Build       *build       `yaml:"build"`
	Environment mapping      `yaml:"environment"`
	Command     words        `yaml:"command"`
	Ports       []port       `yaml:"ports"`
	Expose      []string     `yaml:"expose"`
	Volumes     []string     `yaml:"volumes"`
	Healthcheck *healthcheck `yaml:"healthcheck"`
	DependsOn   dependsOn    `yaml:"depends_on"`
	Restart     string       `yaml:"restart"`

	// Hardening (TestHardening).
	User        string   `yaml:"user"`
	ReadOnly    bool     `yaml:"read_only"`
	SecurityOpt []string `yaml:"security_opt"`
	CapDrop     []string `yaml:"cap_drop"`
	CapAdd      []string `yaml:"cap_add"`
	Privileged  bool     `yaml:"privileged"`
	Tmpfs       words    `yaml:"tmpfs"`
}

type build struct {
	Context    string
	Dockerfile string
	Args       mapping
}

// UnmarshalYAML reads both `build: dir` and `build: {context: ..., ...}`.
func (b *build) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	var long struct {
		Context    string  `yaml:"context"`
		Dockerfile string  `yaml:"dockerfile"`
		Args       mapping `yaml:"args"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	*b = build(long)
	return nil
}

// mapping is compose's environment or build args, written either as a map
// or as a list of NAME=value.
type mapping map[string]string

func (m *mapping) UnmarshalYAML(n *yaml.Node) error {
	out := mapping{}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			v := n.Content[i+1]
			if v.Tag == "!!null" {
				out[n.Content[i].Value] = ""
				continue
			}
			out[n.Content[i].Value] = v.Value
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			k, v, _ := strings.Cut(item.Value, "=")
			out[k] = v
		}
	default:
		return fmt.Errorf("line %d: want a map or a list of NAME=value", n.Line)
	}
	*m = out
	return nil
}

// words is a command: a list, or one string.
type words []string

func (w *words) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*w = words{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*w = list
	return nil
}

type healthcheck struct {
	Test    healthTest `yaml:"test"`
	Disable bool       `yaml:"disable"`
}

// healthTest is a healthcheck's test as Docker runs it: ["CMD", args...] or
// ["CMD-SHELL", script]; a bare string is CMD-SHELL.
type healthTest []string

func (h *healthTest) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*h = healthTest{"CMD-SHELL", n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*h = list
	return nil
}

func (h healthTest) String() string { return strings.Join(h, " ") }

// port is one entry of a service's ports, in short ("[ip:]host:container")
// or long syntax.
type port struct {
	HostIP    string
	Published string // host port; "" when only the container port is given
	Target    string // container port
}

func (p *port) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var long struct {
			HostIP    string `yaml:"host_ip"`
			Published string `yaml:"published"`
			Target    string `yaml:"target"`
		}
		if err := n.Decode(&long); err != nil {
			return err
		}
		*p = port(long)
		return nil
	}
	s, _, _ := strings.Cut(n.Value, "/") // drop /tcp, /udp
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 1:
		p.Target = parts[0]
	case 2:
		p.Published, p.Target = parts[0], parts[1]
	case 3:
		p.HostIP, p.Published, p.Target = parts[0], parts[1], parts[2]
	default:
		return fmt.Errorf("line %d: port %q: want [ip:]host:container", n.Line, n.Value)
	}
	return nil
}

// dependsOn maps each dependency to its condition; the list form means
// service_started.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	out := dependsOn{}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, item := range n.Content {
			out[item.Value] = "service_started"
		}
	case yaml.MappingNode:
		var long map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&long); err != nil {
			return err
		}
		for name, dep := range long {
			if dep.Condition == "" {
				dep.Condition = "service_started"
			}
			out[name] = dep.Condition
		}
	default:
		return fmt.Errorf("line %d: depends_on: want a list or a map", n.Line)
	}
	*d = out
	return nil
}

func loadCompose(t *testing.T) *composeSpec {
	t.Helper()
	var c composeSpec
	readYAML(t, composeFile, &c)
	if len(c.Services) == 0 {
		t.Fatalf("%s: no services", composeFile)
	}
	return &c
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// built are the services built from the Dockerfile: Orderflow's own and
// its jobs (db-bootstrap).
func (c *composeSpec) built() []string {
	var names []string
	for _, name := range sortedKeys(c.Services) {
		if c.Services[name].Build != nil {
			names = append(names, name)
		}
	}
	return names
}

// appServices are the long-running services built from the Dockerfile:
// Orderflow's own.
func (c *composeSpec) appServices() []string {
	var names []string
	for _, name := range sortedKeys(c.Services) {
		if c.Services[name].Build != nil && !c.oneShot(name) {
			names = append(names, name)
		}
	}
	return names
}

// oneShot reports whether a service is a job that others wait for to
// finish (condition service_completed_successfully), such as kafka-init.
// Jobs need no healthcheck and no ports.
func (c *composeSpec) oneShot(name string) bool {
	for _, s := range c.Services {
		if s.DependsOn[name] == "service_completed_successfully" {
			return true
		}
	}
	return false
}

// listens returns the container ports a service serves on, as far as this
// file says: its published and exposed ports, its PORT build argument, and
// for Kafka the ports of KAFKA_LISTENERS.
func (s *service) listens() map[string]bool {
	ports := map[string]bool{}
	for _, p := range s.Ports {
		ports[p.Target] = true
	}
	for _, p := range s.Expose {
		ports[p] = true
	}
	if s.Build != nil && s.Build.Args["PORT"] != "" {
		ports[s.Build.Args["PORT"]] = true
	}
	for _, l := range kafkaListeners(s.Environment["KAFKA_LISTENERS"]) {
		ports[l.port] = true
	}
	return ports
}

// published returns the service's mapping for container port target.
func (s *service) published(target string) (port, bool) {
	for _, p := range s.Ports {
		if p.Target == target && p.Published != "" {
			return p, true
		}
	}
	return port{}, false
}

// checkAddr reports what is wrong with a host:port that a service is
// configured to reach inside the compose network: the host must be a compose
// service that serves that port.
func checkAddr(c *composeSpec, host, port string) error {
	target, ok := c.Services[host]
	if !ok {
		return fmt.Errorf("host %q is not a service in %s (services: %s)", host, composeFile, strings.Join(sortedKeys(c.Services), ", "))
	}
	if !target.listens()[port] {
		return fmt.Errorf("service %q does not serve port %s (it serves %s)", host, port, strings.Join(sortedKeys(target.listens()), ", "))
	}
	return nil
}

// versionParts is how many numbers an image's release has where it is not
// three (major.minor.patch): PostgreSQL's are major.minor since 10.
var versionParts = map[string]int{"postgres": 2}

var (
	// versionTag is a tag that starts with a version: 3.9.1, v1.27.11,
	// 15.19-trixie, 3.13.7-management.
	versionTag = regexp.MustCompile(`^v?(\d+(?:\.\d+)*)(?:-[0-9A-Za-z][0-9A-Za-z.-]*)?$`)
	// datedTag is a Debian snapshot: trixie-20261005, trixie-20261005-slim.
	datedTag = regexp.MustCompile(`^[a-z]+-20\d{6}(?:-slim)?$`)
	digest   = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
)

// checkPinned reports what is wrong with an image reference that should
// name one release: a digest, or a tag with the release's whole version
// number (or a dated Debian snapshot). latest, a bare major (postgres:15) or
// major.minor (rabbitmq:3.10-management) moves to each new release, so a
// rebuild or a pull on another machine runs other code.
func checkPinned(image string) error {
	if digest.MatchString(image) {
		return nil
	}
	name, tag, ok := strings.Cut(path.Base(image), ":")
	if !ok {
		return fmt.Errorf("image %q has no tag (so latest); want an exact version tag or a digest", image)
	}
	if datedTag.MatchString(tag) {
		return nil
	}
	want, example := 3, "major.minor.patch, such as 3.9.1"
	if n, ok := versionParts[name]; ok {
		want, example = n, fmt.Sprintf("%d numbers, as %s numbers its releases", n, name)
	}
	m := versionTag.FindStringSubmatch(tag)
	if m == nil || strings.Count(m[1], ".")+1 < want {
		return fmt.Errorf("image %q is not pinned to one release: tag %q is not a whole version (%s), a dated Debian snapshot (trixie-20261005-slim) or a digest", image, tag, example)
	}
	return nil
}

// --- the tests ----------------------------------------------------------------

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		t.Run(name, func(t *testing.T) {
			switch {
			case s.Image == "" && s.Build == nil:
				t.Errorf("%s: service %q has neither image nor build", composeFile, name)
			case s.Build == nil:
				if err := checkPinned(s.Image); err != nil {
					t.Errorf("%s: service %q: %v", composeFile, name, err)
				}
			}
			if c.oneShot(name) {
				if s.Restart != "" && s.Restart != "no" {
					t.Errorf("%s: service %q is a one-shot job (others wait for it to complete) but has restart: %q; want \"no\"", composeFile, name, s.Restart)
				}
				return
			}
			if s.Healthcheck == nil || s.Healthcheck.Disable || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] == "NONE" {
				t.Errorf("%s: service %q has no healthcheck", composeFile, name)
			} else if kind := s.Healthcheck.Test[0]; kind != "CMD" && kind != "CMD-SHELL" {
				t.Errorf("%s: service %q: healthcheck test starts with %q; want CMD or CMD-SHELL", composeFile, name, kind)
			}
			if len(s.Ports) == 0 {
				t.Errorf("%s: service %q publishes no ports", composeFile, name)
			}
			for _, p := range s.Ports {
				if p.Target == "" {
					t.Errorf("%s: service %q: a ports entry has no container port", composeFile, name)
				}
			}
		})
	}
}

func TestComposeVolumes(t *testing.T) {
	c := loadCompose(t)
	for _, name := range sortedKeys(c.Services) {
		for _, v := range c.Services[name].Volumes {
			src, _, ok := strings.Cut(v, ":")
			if !ok {
				continue // anonymous volume
			}
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s: service %q mounts %q, which does not exist next to %s", composeFile, name, src, composeFile)
				}
				continue
			}
			if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: service %q mounts volume %q, which is not declared under the top-level volumes", composeFile, name, src)
			}
		}
	}
	// The data that must survive `make down` && `make up`.
	for name, dir := range map[string]string{"postgres": "/var/lib/postgresql/data", "kafka": "/var/lib/kafka/data"} {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("%s: no service %q", composeFile, name)
			continue
		}
		found := false
		for _, v := range s.Volumes {
			src, rest, _ := strings.Cut(v, ":")
			dst, _, _ := strings.Cut(rest, ":")
			if dst == dir && c.Volumes != nil {
				_, found = c.Volumes[src]
			}
		}
		if !found {
			t.Errorf("%s: service %q keeps %s in no named volume", composeFile, name, dir)
		}
	}
}

func TestComposeDependsOn(t *testing.T) {
	c := loadCompose(t)
	conditions := []string{"service_started", "service_healthy", "service_completed_successfully"}
	for _, name := range sortedKeys(c.Services) {
		for _, dep := range sortedKeys(c.Services[name].DependsOn) {
			cond := c.Services[name].DependsOn[dep]
			target, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s: service %q depends on %q, which is not a service", composeFile, name, dep)
			case !slices.Contains(conditions, cond):
				t.Errorf("%s: service %q depends on %q with condition %q; want one of %s", composeFile, name, dep, cond, strings.Join(conditions, ", "))
			case cond == "service_healthy" && (target.Healthcheck == nil || len(target.Healthcheck.Test) == 0):
				t.Errorf("%s: service %q waits for %q to be healthy, but %q has no healthcheck", composeFile, name, dep, dep)
			}
		}
	}
	// A cycle would make `docker compose up` refuse to start.
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var visit func(name string, trail []string)
	visit = func(name string, trail []string) {
		switch state[name] {
		case visiting:
			t.Errorf("%s: depends_on cycle: %s", composeFile, strings.Join(append(trail, name), " -> "))
			return
		case done:
			return
		}
		state[name] = visiting
		if s, ok := c.Services[name]; ok {
			for _, dep := range sortedKeys(s.DependsOn) {
				visit(dep, append(trail, name))
			}
		}
		state[name] = done
	}
	for _, name := range sortedKeys(c.Services) {
		visit(name, nil)
	}
}

// TestAppServices checks each Orderflow service against docs/design.md: its port,
// published on the same host port, and a healthcheck on GET /healthz.
func TestAppServices(t *testing.T) {
	c := loadCompose(t)
	apps := c.appServices()
	if !slices.Contains(apps, "orders") {
		t.Fatalf("%s: no service \"orders\" built from the Dockerfile (built services: %q)", composeFile, apps)
	}
	// Every service of docs/design.md that has a command runs in the stack.
	for _, name := range sortedKeys(designPorts) {
		if _, err := os.Stat(filepath.Join(repoRoot, "cmd", name)); err == nil && !slices.Contains(apps, name) {
			t.Errorf("%s: cmd/%s exists but the stack does not run it; add a service %q built with SERVICE=%s", composeFile, name, name, name)
		}
	}
	for _, name := range apps {
		s := c.Services[name]
		t.Run(name, func(t *testing.T) {
			want, ok := designPorts[name]
			if !ok {
				t.Fatalf("%s: service %q is built from the Dockerfile but is not a service of docs/design.md (%s)", composeFile, name, strings.Join(sortedKeys(designPorts), ", "))
			}
			if got := s.Build.Args["SERVICE"]; got != name {
				t.Errorf("%s: service %q builds with build arg SERVICE=%q; want SERVICE=%q (the directory cmd/%s)", composeFile, name, got, name, name)
			}
			if got := s.Build.Args["PORT"]; got != want {
				t.Errorf("%s: service %q builds with build arg PORT=%q; docs/design.md says it serves %s", composeFile, name, got, want)
			}
			p, ok := s.published(want)
			switch {
			case !ok:
				t.Errorf("%s: service %q does not publish its port %s; want %q", composeFile, name, want, "127.0.0.1:"+want+":"+want)
			case p.Published != want:
				t.Errorf("%s: service %q publishes container port %s on host port %s; want the same port, %s, as `make run` uses", composeFile, name, want, p.Published, want)
			}
			u, err := healthcheckURL(s.Healthcheck)
			if err != nil {
				t.Fatalf("%s: service %q: %v", composeFile, name, err)
			}
			if host := u.Hostname(); host != "localhost" && host != "127.0.0.1" {
				t.Errorf("%s: service %q: healthcheck calls %s; want the container itself (localhost)", composeFile, name, u)
			}
			if u.Port() != want || u.Path != "/healthz" {
				t.Errorf("%s: service %q: healthcheck calls %s; want http://localhost:%s/healthz", composeFile, name, u, want)
			}
		})
	}
}

var urlPattern = regexp.MustCompile(`https?://[^\s"']+`)

// healthcheckURL returns the one URL a healthcheck test fetches.
func healthcheckURL(h *healthcheck) (*url.URL, error) {
	if h == nil || len(h.Test) == 0 {
		return nil, errors.New("no healthcheck")
	}
	found := urlPattern.FindAllString(strings.Join(h.Test, " "), -1)
	if len(found) != 1 {
		return nil, fmt.Errorf("healthcheck %q: want exactly one URL to fetch, found %d", h.Test.String(), len(found))
	}
	return url.Parse(found[0])
}

// TestAppServiceEnv checks the environment of each Orderflow service: every
// variable set is one its code reads, and every variable without a safe
// default in a container is set and points at the right compose service.
func TestAppServiceEnv(t *testing.T) {
	c := loadCompose(t)
	for _, name := range c.appServices() {
		s := c.Services[name]
		t.Run(name, func(t *testing.T) {
			dirs := []string{"cmd/" + name, "services/" + name, "pkg", "internal"}
			read := envVarsRead(t, dirs...)
			if len(read) == 0 {
				t.Fatalf("found no environment variables read in %s: has the way config is read changed? update envReadPattern", strings.Join(dirs, ", "))
			}
			// Read through service.PasswordVar, not a literal.
			read[strings.ToUpper(name)+"_POSTGRES_PASSWORD"] = true
			// The OpenTelemetry SDK reads the standard OTEL_* variables
			// itself, so they count as read when the code uses it.
			usesOTel := usesOTelSDK(t, dirs...)
			if usesOTel {
				for _, v := range otelEnv {
					read[v] = true
				}
			}
			for _, v := range sortedKeys(s.Environment) {
				if !read[v] {
					hint := ""
					if strings.HasPrefix(v, "OTEL_") && !usesOTel {
						hint = "; the OTEL_* variables count as read once the code imports the OpenTelemetry SDK or an OTLP exporter"
					}
					t.Errorf("%s: service %q sets %s, which its code never reads (looked for os.Getenv, os.LookupEnv and pkg/config calls such as e.String(%q, ...) in %s)%s", composeFile, name, v, v, strings.Join(dirs, ", "), hint)
				}
			}
			for _, v := range requiredEnv(name) {
				if s.Environment[v] == "" {
					t.Errorf("%s: service %q does not set %s; its default (docs/design.md \"Environment\") points at localhost or a dev-stack stand-in, which is wrong in a container", composeFile, name, v)
				}
			}
			// Tracing: spans go to the compose trace viewer's OTLP/HTTP
			// port, named after the service.
			if v := s.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]; v == "" {
				t.Errorf("%s: service %q does not set OTEL_EXPORTER_OTLP_ENDPOINT; want http://jaeger:4318, the trace viewer's OTLP/HTTP port", composeFile, name)
			} else if err := checkURL(c, v, "http", "80"); err != nil {
				t.Errorf("%s: service %q: OTEL_EXPORTER_OTLP_ENDPOINT=%s: %v", composeFile, name, v, err)
			} else if u, _ := url.Parse(v); u.Port() != "4318" {
				t.Errorf("%s: service %q: OTEL_EXPORTER_OTLP_ENDPOINT=%s; want port 4318 (OTLP over HTTP, which the services export with)", composeFile, name, v)
			}
			if v := s.Environment["OTEL_SERVICE_NAME"]; v != name {
				t.Errorf("%s: service %q: OTEL_SERVICE_NAME=%q; want %q, so that its traces carry its name", composeFile, name, v, name)
			}
			if v := s.Environment["POSTGRES_URL"]; v != "" {
				if err := checkURL(c, v, "postgres", "5432"); err != nil {
					t.Errorf("%s: service %q: POSTGRES_URL=%s: %v", composeFile, name, v, err)
				}
			}
			if v := s.Environment["AMQP_URL"]; v != "" {
				if err := checkURL(c, v, "amqp", "5672"); err != nil {
					t.Errorf("%s: service %q: AMQP_URL=%s: %v", composeFile, name, v, err)
				}
			}
			if v := s.Environment["SMTP_ADDR"]; v != "" {
				host, port, err := net.SplitHostPort(v)
				if err == nil {
					err = checkAddr(c, host, port)
				}
				if err != nil {
					t.Errorf("%s: service %q: SMTP_ADDR=%s: %v", composeFile, name, v, err)
				}
			}
			if v := s.Environment["KAFKA_BROKERS"]; v != "" {
				advertised := kafkaAdvertised(c)
				for _, b := range strings.Split(v, ",") {
					b = strings.TrimSpace(b)
					if !slices.Contains(advertised, b) {
						t.Errorf("%s: service %q: KAFKA_BROKERS names %q, which is not an advertised listener of a compose service (KAFKA_ADVERTISED_LISTENERS inside the network: %q)", composeFile, name, b, advertised)
					}
				}
			}
		})
	}
}

// TestDBBootstrap checks the job that makes every service's database and
// role: orderflowctl db bootstrap, as the superuser, after PostgreSQL is
// healthy and before any service starts; the services' own URLs carry no
// superuser's credentials (they connect as their roles).
func TestDBBootstrap(t *testing.T) {
	c := loadCompose(t)
	job, ok := c.Services["db-bootstrap"]
	if !ok {
		t.Fatalf("%s: no service db-bootstrap (orderflowctl db bootstrap): the services could not connect as their roles", composeFile)
	}
	if job.Build == nil || job.Build.Args["SERVICE"] != "orderflowctl" || strings.Join(job.Command, " ") != "db bootstrap" {
		t.Errorf("%s: db-bootstrap must build SERVICE=orderflowctl and run [db, bootstrap]; it runs %q", composeFile, strings.Join(job.Command, " "))
	}
	if !c.oneShot("db-bootstrap") {
		t.Errorf("%s: nothing waits for db-bootstrap to complete", composeFile)
	}
	if job.DependsOn["postgres"] != "service_healthy" {
		t.Errorf("%s: db-bootstrap must wait for postgres to be healthy", composeFile)
	}
	admin := job.Environment["POSTGRES_ADMIN_URL"]
	if err := checkURL(c, admin, "postgres", "5432"); err != nil {
		t.Errorf("%s: db-bootstrap: POSTGRES_ADMIN_URL=%s: %v", composeFile, admin, err)
	} else if u, _ := url.Parse(admin); u.User.Username() != "postgres" {
		t.Errorf("%s: db-bootstrap: POSTGRES_ADMIN_URL=%s; want the image's superuser, postgres", composeFile, admin)
	}
	read := envVarsRead(t, "cmd/orderflowctl", "pkg", "internal")
	for _, v := range sortedKeys(job.Environment) {
		if !read[v] && !strings.HasSuffix(v, "_POSTGRES_PASSWORD") {
			t.Errorf("%s: db-bootstrap sets %s, which orderflowctl never reads", composeFile, v)
		}
	}
	for _, name := range c.appServices() {
		s := c.Services[name]
		if s.DependsOn["db-bootstrap"] != "service_completed_successfully" {
			t.Errorf("%s: service %q does not wait for db-bootstrap to complete; it would find no role to connect as", composeFile, name)
		}
		if u, err := url.Parse(s.Environment["POSTGRES_URL"]); err == nil && u.User != nil {
			t.Errorf("%s: service %q: POSTGRES_URL names user %q; a service connects as its own role, and holds no superuser's credentials", composeFile, name, u.User.Username())
		}
		pw := strings.ToUpper(name) + "_POSTGRES_PASSWORD"
		if s.Environment[pw] != job.Environment[pw] {
			t.Errorf("%s: service %q: %s differs from db-bootstrap's, which sets the role's password", composeFile, name, pw)
		}
	}
}

// checkURL checks a connection URL: its scheme, and that its host is a
// compose service serving its port (defaultPort when the URL has none).
func checkURL(c *composeSpec, raw, scheme, defaultPort string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != scheme && !(scheme == "postgres" && u.Scheme == "postgresql") {
		return fmt.Errorf("scheme %q; want %s://", u.Scheme, scheme)
	}
	port := u.Port()
	if port == "" {
		port = defaultPort
	}
	if err := checkAddr(c, u.Hostname(), port); err != nil {
		return err
	}
	if pw, ok := u.User.Password(); ok && scheme == "postgres" {
		if want := c.Services[u.Hostname()].Environment["POSTGRES_PASSWORD"]; want != "" && pw != want {
			return fmt.Errorf("password does not match POSTGRES_PASSWORD of service %q", u.Hostname())
		}
	}
	return nil
}

// envReadPattern finds the variable names the code reads: string literals
// passed to os.Getenv, os.LookupEnv, or pkg/config's Env methods
// (env.String("NAME", ...), e.Duration("NAME", ...), ...).
var envReadPattern = regexp.MustCompile(`(?:\bos\.(?:Getenv|LookupEnv)|\.(?:String|Int|Int64|Duration|LogLevel|OneOf|Bool|Float64|Reject))\(\s*"([A-Z][A-Z0-9_]*)"`)

// envVarsRead returns the variables read by the non-test Go files under
// dirs, which are relative to the repository root; missing dirs are skipped.
func envVarsRead(t *testing.T, dirs ...string) map[string]bool {
	t.Helper()
	read := map[string]bool{}
	for _, dir := range dirs {
		root := filepath.Join(repoRoot, dir)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range envReadPattern.FindAllSubmatch(b, -1) {
				read[string(m[1])] = true
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	return read
}

// otelEnv are the OpenTelemetry SDK's environment variables for traces
// and resources (the specification's "Environment Variable Specification").
var otelEnv = []string{
	"OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_PROPAGATORS",
	"OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
	"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
	"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
	"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
	"OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
}

// otelSDKImport matches an import of the OpenTelemetry SDK or an OTLP
// exporter, the packages that read otelEnv.
var otelSDKImport = regexp.MustCompile(`"go\.opentelemetry\.io/otel/(?:sdk|exporters/otlp)[^"]*"`)

// usesOTelSDK reports whether a non-test Go file under dirs imports the
// OpenTelemetry SDK or an OTLP exporter.
func usesOTelSDK(t *testing.T, dirs ...string) bool {
	t.Helper()
	found := false
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || found {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			found = otelSDKImport.Match(b)
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	return found
}

type listener struct{ name, host, port string }

// kafkaListeners parses a KAFKA_LISTENERS or KAFKA_ADVERTISED_LISTENERS
// value: NAME://host:port,...
func kafkaListeners(v string) []listener {
	var out []listener
	for _, item := range strings.Split(v, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(item), "://")
		if !ok {
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		out = append(out, listener{name: name, host: host, port: port})
	}
	return out
}

// kafkaAdvertised returns the host:port of every advertised Kafka listener
// whose host is a compose service, that is, reachable inside the network.
func kafkaAdvertised(c *composeSpec) []string {
	var out []string
	for _, name := range sortedKeys(c.Services) {
		for _, l := range kafkaListeners(c.Services[name].Environment["KAFKA_ADVERTISED_LISTENERS"]) {
			if _, ok := c.Services[l.host]; ok {
				out = append(out, net.JoinHostPort(l.host, l.port))
			}
		}
	}
	return out
}

func TestKafka(t *testing.T) {
	c := loadCompose(t)
	k, ok := c.Services["kafka"]
	if !ok {
		t.Fatalf("%s: no service \"kafka\"", composeFile)
	}
	env := k.Environment
	if roles := env["KAFKA_PROCESS_ROLES"]; roles != "broker,controller" && roles != "controller,broker" {
		t.Errorf("%s: kafka: KAFKA_PROCESS_ROLES=%q; want broker,controller (single-node KRaft)", composeFile, roles)
	}
	listeners := map[string]listener{}
	for _, l := range kafkaListeners(env["KAFKA_LISTENERS"]) {
		listeners[l.name] = l
	}
	protocols := map[string]bool{}
	for _, pair := range strings.Split(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"], ",") {
		name, _, _ := strings.Cut(pair, ":")
		protocols[name] = true
	}
	for name := range listeners {
		if !protocols[name] {
			t.Errorf("%s: kafka: listener %s is missing from KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", composeFile, name)
		}
	}
	if _, ok := listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]]; !ok {
		t.Errorf("%s: kafka: KAFKA_CONTROLLER_LISTENER_NAMES=%q is not in KAFKA_LISTENERS", composeFile, env["KAFKA_CONTROLLER_LISTENER_NAMES"])
	}
	internal := false
	for _, adv := range kafkaListeners(env["KAFKA_ADVERTISED_LISTENERS"]) {
		l, ok := listeners[adv.name]
		if !ok {
			t.Errorf("%s: kafka: advertised listener %s is not in KAFKA_LISTENERS", composeFile, adv.name)
			continue
		}
		if adv.host == "kafka" { // for the containers
			internal = true
			if l.port != adv.port {
				t.Errorf("%s: kafka: listener %s listens on port %s but is advertised as kafka:%s", composeFile, adv.name, l.port, adv.port)
			}
			continue
		}
		// For the host: the listener's port must be published on the
		// advertised port.
		if p, ok := k.published(l.port); !ok || p.Published != adv.port {
			t.Errorf("%s: kafka: listener %s is advertised as %s:%s but container port %s is not published on host port %s", composeFile, adv.name, adv.host, adv.port, l.port, adv.port)
		}
	}
	if !internal {
		t.Errorf("%s: kafka: KAFKA_ADVERTISED_LISTENERS=%q advertises no listener on host kafka, which the services use", composeFile, env["KAFKA_ADVERTISED_LISTENERS"])
	}
}

// TestKafkaTopics checks that kafka-init creates exactly the topics the code
// declares (internal/registry.Topics, with Partitions partitions) and that
// every service that produces waits for it.
func TestKafkaTopics(t *testing.T) {
	c := loadCompose(t)
	wantTopics, wantPartitions := kafkaTopicsFromCode(t)
	job, ok := c.Services["kafka-init"]
	if !ok {
		t.Fatalf("%s: no service \"kafka-init\" creating the topics %q; franz-go producers do not auto-create topics", composeFile, wantTopics)
	}
	got := strings.Fields(job.Environment["TOPICS"])
	sort.Strings(got)
	sort.Strings(wantTopics)
	if !slices.Equal(got, wantTopics) {
		t.Errorf("%s: kafka-init: TOPICS=%q; internal/registry.Topics() is %q", composeFile, got, wantTopics)
	}
	if p := job.Environment["PARTITIONS"]; p != wantPartitions {
		t.Errorf("%s: kafka-init: PARTITIONS=%q; pkg/events/kafka.Partitions is %s", composeFile, p, wantPartitions)
	}
	script := strings.Join(job.Command, " ")
	for _, ref := range []string{"$$TOPICS", "$$PARTITIONS"} {
		if !strings.Contains(script, ref) {
			t.Errorf("%s: kafka-init: command does not use %s (written $$ so that compose leaves it to the shell)", composeFile, ref)
		}
	}
	if m := regexp.MustCompile(`--bootstrap-server[ =](\S+)`).FindStringSubmatch(script); m == nil {
		t.Errorf("%s: kafka-init: command has no --bootstrap-server", composeFile)
	} else if !slices.Contains(kafkaAdvertised(c), m[1]) {
		t.Errorf("%s: kafka-init: --bootstrap-server %s is not an advertised Kafka listener inside the network (%q)", composeFile, m[1], kafkaAdvertised(c))
	}
	if cond := job.DependsOn["kafka"]; cond != "service_healthy" {
		t.Errorf("%s: kafka-init depends on kafka with condition %q; want service_healthy", composeFile, cond)
	}
	for _, name := range c.appServices() {
		if cond := c.Services[name].DependsOn["kafka-init"]; cond != "service_completed_successfully" {
			t.Errorf("%s: service %q depends on kafka-init with condition %q; want service_completed_successfully, so its topics exist before it produces", composeFile, name, cond)
		}
	}
}

// kafkaTopicsFromCode is the registry's topics (every emitted topic and
// each consumer's dlq.<service>) and pkg/events/kafka's partition count.
func kafkaTopicsFromCode(t *testing.T) (topics []string, partitions string) {
	t.Helper()
	return registry.Topics(), strconv.Itoa(kafka.Partitions)
}

func parseGoDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	fset := token.NewFileSet()
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %v", err)
		}
		files = append(files, f)
	}
	return files
}

func unquote(s string) string {
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

func TestPrometheusTargets(t *testing.T) {
	c := loadCompose(t)
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, prometheusFile, &cfg)
	scraped := map[string]bool{} // "orders:8080/metrics"
	for _, job := range cfg.ScrapeConfigs {
		metricsPath := job.MetricsPath
		if metricsPath == "" {
			metricsPath = "/metrics"
		}
		for _, sc := range job.StaticConfigs {
			for _, target := range sc.Targets {
				host, port, err := net.SplitHostPort(target)
				if err == nil {
					err = checkAddr(c, host, port)
				}
				if err != nil {
					t.Errorf("%s: job %q: target %q: %v", prometheusFile, job.JobName, target, err)
					continue
				}
				scraped[target+metricsPath] = true
			}
		}
	}
	for _, name := range c.appServices() {
		want := name + ":" + designPorts[name] + "/metrics"
		if !scraped[want] {
			t.Errorf("%s: no job scrapes service %q at %s", prometheusFile, name, want)
		}
	}
	mountsAt(t, c, "prometheus", "./"+prometheusFile, "/etc/prometheus/prometheus.yml")
}

func TestGrafana(t *testing.T) {
	c := loadCompose(t)
	type datasource struct {
		Name string `yaml:"name"`
		Type string `yaml:"type"`
		UID  string `yaml:"uid"`
		URL  string `yaml:"url"`
	}
	files, err := filepath.Glob(filepath.Join(filepath.Dir(datasourceFile), "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(files, datasourceFile) {
		t.Fatalf("no %s", datasourceFile)
	}
	found := map[string]bool{} // datasource type -> points at the image's service
	images := map[string]string{"prometheus": "prometheus:", "jaeger": "all-in-one:"}
	uids := map[string]string{}
	for _, file := range files {
		var cfg struct {
			Datasources []datasource `yaml:"datasources"`
		}
		readYAML(t, file, &cfg)
		for _, ds := range cfg.Datasources {
			if ds.UID == "" {
				t.Errorf("%s: datasource %q has no uid; dashboards refer to datasources by uid", file, ds.Name)
			} else if prev, ok := uids[ds.UID]; ok {
				t.Errorf("%s: datasource %q has uid %q, as %s's does", file, ds.Name, ds.UID, prev)
			}
			uids[ds.UID] = file
			u, err := url.Parse(ds.URL)
			if err == nil {
				err = checkAddr(c, u.Hostname(), u.Port())
			}
			if err != nil {
				t.Errorf("%s: datasource %q: url %q: %v", file, ds.Name, ds.URL, err)
				continue
			}
			if prefix, ok := images[ds.Type]; ok && strings.HasPrefix(path.Base(c.Services[u.Hostname()].Image), prefix) {
				found[ds.Type] = true
			}
		}
	}
	for _, typ := range sortedKeys(images) {
		if !found[typ] {
			t.Errorf("%s: no datasource of type %s points at the service running %s", filepath.Dir(datasourceFile), typ, strings.TrimSuffix(images[typ], ":"))
		}
	}
	mountsAt(t, c, "grafana", "./grafana/provisioning", "/etc/grafana/provisioning")
	g := c.Services["grafana"]
	if g == nil {
		return
	}
	if v := g.Environment["GF_AUTH_ANONYMOUS_ENABLED"]; v != "true" {
		t.Errorf("%s: grafana: GF_AUTH_ANONYMOUS_ENABLED=%q; want \"true\"", composeFile, v)
	}
	if v := g.Environment["GF_AUTH_ANONYMOUS_ORG_ROLE"]; v != "Viewer" {
		t.Errorf("%s: grafana: GF_AUTH_ANONYMOUS_ORG_ROLE=%q; want Viewer (anonymous users must not edit)", composeFile, v)
	}
}

// mountsAt checks that service mounts src (relative to this directory) at dst.
func mountsAt(t *testing.T, c *composeSpec, service, src, dst string) {
	t.Helper()
	s, ok := c.Services[service]
	if !ok {
		t.Errorf("%s: no service %q", composeFile, service)
		return
	}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && filepath.Clean(parts[0]) == filepath.Clean(src) && parts[1] == dst {
			return
		}
	}
	t.Errorf("%s: service %q does not mount %s at %s", composeFile, service, src, dst)
}

// TestTraceViewer checks the compose trace viewer: Jaeger all-in-one with
// its OTLP receivers (gRPC 4317, HTTP 4318) and its UI (16686) published,
// which every service's OTEL_EXPORTER_OTLP_ENDPOINT points at (checked by
// TestAppServiceEnv).
func TestTraceViewer(t *testing.T) {
	c := loadCompose(t)
	j, ok := c.Services["jaeger"]
	if !ok {
		t.Fatalf("%s: no service \"jaeger\" (the trace viewer the services send OTLP to)", composeFile)
	}
	if !strings.HasPrefix(j.Image, "jaegertracing/all-in-one:") {
		t.Errorf("%s: jaeger: image %q; want jaegertracing/all-in-one:<version>", composeFile, j.Image)
	}
	if v := j.Environment["COLLECTOR_OTLP_ENABLED"]; v != "true" {
		t.Errorf("%s: jaeger: COLLECTOR_OTLP_ENABLED=%q; want \"true\"", composeFile, v)
	}
	for _, p := range []string{"4317", "4318", "16686"} {
		if pub, ok := j.published(p); !ok || pub.Published != p {
			t.Errorf("%s: jaeger: container port %s is not published on host port %s (OTLP gRPC 4317, OTLP HTTP 4318, UI 16686)", composeFile, p, p)
		}
	}
	for _, name := range c.appServices() {
		if _, ok := c.Services[name].DependsOn["jaeger"]; !ok {
			t.Errorf("%s: service %q does not depend on jaeger, so its first spans may find nobody listening", composeFile, name)
		}
	}
}

// --- Dockerfile -----------------------------------------------------------------

type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// parseDockerfile returns the instructions before the first FROM (global
// ARGs) and those of each stage. Continuation lines are joined; comments
// are dropped.
func parseDockerfile(t *testing.T) (global []instruction, stages [][]instruction) {
	t.Helper()
	b, err := os.ReadFile(dockerfileFile)
	if err != nil {
		t.Fatal(err)
	}
	var cur []string
	start := 0
	flush := func() {
		text := strings.TrimSpace(strings.Join(cur, " "))
		cur = nil
		if text == "" {
			return
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			global = append(global, in)
		} else {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if len(cur) == 0 {
			start = i + 1
		}
		if rest, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur = append(cur, rest)
			continue
		}
		cur = append(cur, trimmed)
		flush()
	}
	flush()
	return global, stages
}

// argDefaults returns NAME -> default of the ARG instructions in ins.
func argDefaults(ins []instruction) map[string]string {
	out := map[string]string{}
	for _, in := range ins {
		if in.cmd == "ARG" {
			name, def, _ := strings.Cut(in.args, "=")
			out[name] = def
		}
	}
	return out
}

var argRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

func TestDockerfile(t *testing.T) {
	global, stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%s: %d stage(s); want a builder stage and a runtime stage", dockerfileFile, len(stages))
	}
	globals := argDefaults(global)
	expand := func(s string) string {
		return argRef.ReplaceAllStringFunc(s, func(ref string) string {
			return globals[argRef.FindStringSubmatch(ref)[1]]
		})
	}

	// The builder's Go is exactly the go.mod go line's release (go 1.26.8 ->
	// golang:1.26.8-<debian release>), and both images are pinned.
	builder, runtime := stages[0], stages[len(stages)-1]
	goMod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+(?:\.\d+)?)\s*$`).FindSubmatch(goMod)
	if m == nil {
		t.Fatal("go.mod: no go line")
	}
	goVersion := string(m[1])
	if strings.Count(goVersion, ".") != 2 {
		t.Errorf("go.mod: go %s; want the patch release too (go %s.0 or later), which the builder image is pinned to", goVersion, goVersion)
	}
	from := expand(strings.Fields(builder[0].args)[0])
	builderTag, ok := strings.CutPrefix(from, "golang:"+goVersion)
	if !ok || (builderTag != "" && !strings.HasPrefix(builderTag, "-") && !strings.HasPrefix(builderTag, "@")) {
		t.Errorf("%s:%d: builder stage is FROM %s; go.mod wants Go %s, so want golang:%s-<debian release>", dockerfileFile, builder[0].line, from, goVersion, goVersion)
	}
	runtimeFrom := expand(strings.Fields(runtime[0].args)[0])
	if !strings.Contains(runtimeFrom, "slim") && !strings.Contains(runtimeFrom, "distroless") {
		t.Errorf("%s:%d: runtime stage is FROM %s; want a debian-slim or distroless image", dockerfileFile, runtime[0].line, runtimeFrom)
	}
	for _, st := range []instruction{builder[0], runtime[0]} {
		if err := checkPinned(expand(strings.Fields(st.args)[0])); err != nil {
			t.Errorf("%s:%d: FROM %s (ARG defaults expanded): %v", dockerfileFile, st.line, st.args, err)
		}
	}
	// The runtime's Debian release is the builder's: one release to follow.
	release := strings.TrimPrefix(strings.SplitN(builderTag, "@", 2)[0], "-")
	if rt, isDebian := strings.CutPrefix(runtimeFrom, "debian:"); ok && isDebian && release != "" && !strings.HasPrefix(rt, release+"-") {
		t.Errorf("%s:%d: runtime stage is FROM %s, builder golang:%s-%s; want the same Debian release (%s-<YYYYMMDD>-slim)", dockerfileFile, runtime[0].line, runtimeFrom, goVersion, release, release)
	}

	builds := false
	for _, in := range builder {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") && strings.Contains(in.args, "./cmd/${SERVICE}") {
			builds = true
		}
	}
	if !builds {
		t.Errorf("%s: the builder stage has no RUN ... go build ... ./cmd/${SERVICE}", dockerfileFile)
	}
	if _, ok := argDefaults(builder)["SERVICE"]; !ok {
		t.Errorf("%s: the builder stage declares no ARG SERVICE", dockerfileFile)
	}

	runtimeArgs := argDefaults(runtime)
	var user, expose string
	for _, in := range runtime {
		switch in.cmd {
		case "USER":
			user = in.args
		case "EXPOSE":
			expose = in.args
		}
	}
	if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		t.Errorf("%s: the runtime stage runs as %q; want a non-root USER", dockerfileFile, user)
	}
	if expose != "${PORT}" && expose != "$PORT" {
		t.Errorf("%s: the runtime stage has EXPOSE %q; want EXPOSE ${PORT}, the service's port", dockerfileFile, expose)
	}
	if _, ok := runtimeArgs["PORT"]; !ok {
		t.Errorf("%s: the runtime stage declares no ARG PORT, so EXPOSE ${PORT} is empty", dockerfileFile)
	}
}

// TestComposeBuilds checks each service built from the Dockerfile: the build
// context is the repository root, the Dockerfile is this one, every build
// arg is one it declares, cmd/<SERVICE> is a main package, and the tools the
// healthcheck runs are installed in the runtime stage.
func TestComposeBuilds(t *testing.T) {
	c := loadCompose(t)
	global, stages := parseDockerfile(t)
	declared := argDefaults(global)
	for _, st := range stages {
		for k, v := range argDefaults(st) {
			declared[k] = v
		}
	}
	var runtimeText strings.Builder
	for _, in := range stages[len(stages)-1] {
		runtimeText.WriteString(in.args + "\n")
	}
	for _, name := range c.built() {
		b := c.Services[name].Build
		t.Run(name, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(b.Context, "go.mod")); err != nil {
				t.Errorf("%s: service %q: build context %q is not the repository root (no go.mod there)", composeFile, name, b.Context)
			}
			df := b.Dockerfile
			if df == "" {
				df = "Dockerfile"
			}
			want, _ := filepath.Abs(dockerfileFile)
			got, _ := filepath.Abs(filepath.Join(b.Context, df))
			if got != want {
				t.Errorf("%s: service %q builds with %s (relative to %s); want deploy/Dockerfile", composeFile, name, df, b.Context)
			}
			for _, arg := range sortedKeys(b.Args) {
				if _, ok := declared[arg]; !ok {
					t.Errorf("%s: service %q passes build arg %s, which %s does not declare", composeFile, name, arg, dockerfileFile)
				}
			}
			svc := b.Args["SERVICE"]
			if svc == "" {
				svc = declared["SERVICE"]
			}
			if err := checkMainPackage(filepath.Join(repoRoot, "cmd", svc)); err != nil {
				t.Errorf("%s: service %q builds SERVICE=%s: %v", composeFile, name, svc, err)
			}
			if hc := c.Services[name].Healthcheck; hc != nil && len(hc.Test) > 1 {
				tool := strings.Fields(hc.Test[1])[0]
				if hc.Test[0] == "CMD" && !strings.Contains(runtimeText.String(), tool) {
					t.Errorf("%s: service %q: healthcheck runs %s, which %s's runtime stage does not install", composeFile, name, tool, dockerfileFile)
				}
			}
		})
	}
}

// TestHardening checks that every service built from the Dockerfile (the
// services and the db-bootstrap job) runs with least privilege: as the
// image's numeric non-root USER (no compose user: override), with a
// read-only root filesystem, all capabilities dropped and none added,
// no-new-privileges (no setuid binary can raise them again), not privileged.
// Nothing of theirs writes a file, so they get no tmpfs; email would write
// its mbox when SMTP_ADDR is unset, which TestAppServiceEnv forbids.
func TestHardening(t *testing.T) {
	c := loadCompose(t)
	_, stages := parseDockerfile(t)
	var user instruction
	for _, in := range stages[len(stages)-1] {
		if in.cmd == "USER" {
			user = in
		}
	}
	if err := checkNonRootUser(user.args); err != nil {
		t.Errorf("%s:%d: the runtime stage's USER: %v", dockerfileFile, user.line, err)
	}
	built := c.built()
	if !slices.Contains(built, "db-bootstrap") {
		t.Errorf("%s: no db-bootstrap built from the Dockerfile among %q", composeFile, built)
	}
	for _, name := range built {
		s := c.Services[name]
		t.Run(name, func(t *testing.T) {
			if s.User != "" {
				if err := checkNonRootUser(s.User); err != nil {
					t.Errorf("%s: service %q: user: %v", composeFile, name, err)
				}
			}
			if !s.ReadOnly {
				t.Errorf("%s: service %q: want read_only: true (nothing it runs writes to its filesystem)", composeFile, name)
			}
			if !slices.ContainsFunc(s.SecurityOpt, func(o string) bool {
				return o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true"
			}) {
				t.Errorf("%s: service %q: security_opt %q; want [\"no-new-privileges:true\"]", composeFile, name, s.SecurityOpt)
			}
			if !slices.ContainsFunc(s.CapDrop, func(c string) bool { return strings.EqualFold(c, "ALL") }) {
				t.Errorf("%s: service %q: cap_drop %q; want [ALL] (it binds ports above 1024 and needs no capability)", composeFile, name, s.CapDrop)
			}
			if len(s.CapAdd) > 0 {
				t.Errorf("%s: service %q: cap_add %q; it needs no capability", composeFile, name, s.CapAdd)
			}
			if s.Privileged {
				t.Errorf("%s: service %q is privileged", composeFile, name)
			}
		})
	}
}

// checkNonRootUser reports what is wrong with a USER (or compose user:)
// that should be numeric and not root: uid[:gid], neither 0. A name would
// have to be looked up in the image's /etc/passwd to tell it is not root,
// which a runtime checking for non-root (Kubernetes' runAsNonRoot) refuses.
func checkNonRootUser(user string) error {
	m := regexp.MustCompile(`^(\d+)(?::(\d+))?$`).FindStringSubmatch(user)
	switch {
	case user == "":
		return errors.New("none, so root; want a numeric non-root uid[:gid] such as 10001:10001")
	case m == nil:
		return fmt.Errorf("%q is not numeric; want uid[:gid] such as 10001:10001", user)
	case strings.TrimLeft(m[1], "0") == "" || (m[2] != "" && strings.TrimLeft(m[2], "0") == ""):
		return fmt.Errorf("%q is root's uid or gid", user)
	}
	return nil
}

// checkMainPackage reports whether dir holds a non-test Go file of package
// main.
func checkMainPackage(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("no directory cmd/%s: %w", filepath.Base(dir), err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		if f.Name.Name == "main" {
			return nil
		}
	}
	return fmt.Errorf("cmd/%s has no Go file of package main", filepath.Base(dir))
}

// --- Makefile ---------------------------------------------------------------------

// recipe returns the command lines of a Makefile target.
func recipe(makefile, target string) ([]string, bool) {
	rule := regexp.MustCompile(`^` + regexp.QuoteMeta(target) + `\s*:([^=]|$)`)
	lines := strings.Split(makefile, "\n")
	for i, line := range lines {
		if !rule.MatchString(line) {
			continue
		}
		var cmds []string
		for _, l := range lines[i+1:] {
			if !strings.HasPrefix(l, "\t") {
				break
			}
			cmds = append(cmds, strings.TrimSpace(l))
		}
		return cmds, true
	}
	return nil, false
}

// composeCall is one `docker compose` command of a recipe.
type composeCall struct {
	files      []string // -f values
	subcommand string
	args       []string // after the subcommand, flags dropped
}

func parseComposeCall(line string) (composeCall, bool) {
	fields := strings.Fields(strings.TrimLeft(line, "@-+"))
	i := slices.Index(fields, "compose")
	if i < 1 || (fields[i-1] != "docker" && !strings.HasSuffix(fields[i-1], "/docker")) {
		return composeCall{}, false
	}
	var call composeCall
	rest := fields[i+1:]
	for len(rest) > 0 {
		f := rest[0]
		rest = rest[1:]
		switch {
		case call.subcommand == "" && (f == "-f" || f == "--file") && len(rest) > 0:
			call.files = append(call.files, rest[0])
			rest = rest[1:]
		case strings.HasPrefix(f, "--file="):
			call.files = append(call.files, strings.TrimPrefix(f, "--file="))
		case call.subcommand == "" && slices.Contains([]string{"--env-file", "-p", "--project-name", "--project-directory", "--profile"}, f) && len(rest) > 0:
			rest = rest[1:] // a global flag's value
		case strings.HasPrefix(f, "-"):
		case call.subcommand == "":
			call.subcommand = f
		default:
			call.args = append(call.args, f)
		}
	}
	return call, true
}

func TestMakefile(t *testing.T) {
	c := loadCompose(t)
	b, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	makefile := string(b)
	wantFile := "deploy/" + composeFile
	for _, tc := range []struct {
		target, subcommand string
		services           []string // for up: exactly these, or all when nil
		files              []string // -f, in order; nil is compose.yaml alone
	}{
		{target: "up", subcommand: "up"},
		{target: "down", subcommand: "down"},
		{target: "deps", subcommand: "up", services: []string{"postgres", "rabbitmq"}},
		{target: "up-secure", subcommand: "up", files: []string{wantFile, "deploy/" + secureFile}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			cmds, ok := recipe(makefile, tc.target)
			if !ok {
				t.Fatalf("Makefile: no target %q", tc.target)
			}
			var calls []composeCall
			for _, cmd := range cmds {
				if call, ok := parseComposeCall(cmd); ok {
					calls = append(calls, call)
				}
			}
			if len(calls) != 1 {
				t.Fatalf("Makefile: target %q runs %d `docker compose` commands; want one (recipe: %q)", tc.target, len(calls), cmds)
			}
			call := calls[0]
			files := tc.files
			if files == nil {
				files = []string{wantFile}
			}
			if !slices.Equal(call.files, files) {
				t.Errorf("Makefile: target %q runs docker compose with -f %q; want -f %q in that order", tc.target, call.files, files)
			}
			if call.subcommand != tc.subcommand {
				t.Errorf("Makefile: target %q runs `docker compose %s`; want `docker compose %s`", tc.target, call.subcommand, tc.subcommand)
			}
			got := slices.Sorted(slices.Values(call.args))
			if tc.services == nil {
				if len(got) > 0 {
					t.Errorf("Makefile: target %q starts only %q; want the whole stack", tc.target, got)
				}
				return
			}
			if !slices.Equal(got, tc.services) {
				t.Errorf("Makefile: target %q starts %q; want exactly %q", tc.target, got, tc.services)
			}
			for _, name := range got {
				if _, ok := c.Services[name]; !ok {
					t.Errorf("Makefile: target %q starts %q, which is not a service in %s", tc.target, name, composeFile)
				}
			}
		})
	}

	// `make deps` serves `make run` and `make test` on the host, which reach
	// PostgreSQL and RabbitMQ at docs/design.md's defaults, localhost:5432 and
	// localhost:5672.
	for name, hostPort := range map[string]string{"postgres": "5432", "rabbitmq": "5672"} {
		s, ok := c.Services[name]
		if !ok {
			continue // reported above
		}
		p, ok := s.published(hostPort)
		switch {
		case !ok || p.Published != hostPort:
			t.Errorf("%s: service %q does not publish container port %s on host port %s, where `make run` and `make test` look for it", composeFile, name, hostPort, hostPort)
		case p.HostIP != "" && p.HostIP != "127.0.0.1" && p.HostIP != "0.0.0.0":
			t.Errorf("%s: service %q publishes %s on %s, which localhost does not reach", composeFile, name, hostPort, p.HostIP)
		}
	}
}
