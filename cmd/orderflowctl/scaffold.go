package main

import (
	"bytes"
	"embed"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/events/contract"
)

// `orderflowctl new service NAME --port N --consumes a,b [--emits]` writes
// a working service that consumes the given topics (an append-only log of
// their events per order, GET /NAME/{orderId}, described by its
// openapi.json and held to it by its TestOpenAPI) and wires it everywhere a
// service is listed: the registry and its test, the dev stack, compose and
// kafka-init, prometheus.yml, sqlc.yaml (then sqlc generate). make test
// passes right after (TestNewServiceBuildsAndPasses).

//go:embed scaffold/*.tmpl
var scaffoldFS embed.FS

// marker is the line each list keeps where the scaffold adds its entry.
const marker = "orderflowctl new service adds its service above this line."

// scaffold is what the templates see.
type scaffold struct {
	Name, Upper, Module string
	Port                int
	Consumes            []string
	Emits               bool
	Events              []string // of the consumed topics, by name
}

func newService(args []string, dir string, out io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New("usage: orderflowctl new service NAME --port N --consumes topic[,topic] [--emits]")
	}
	s := scaffold{Name: args[0]}
	fs := flag.NewFlagSet("new service", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&s.Port, "port", 0, "HTTP port")
	consumes := fs.String("consumes", "", "topics to consume, comma-separated")
	fs.BoolVar(&s.Emits, "emits", false, "the service emits to a topic of its own")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("new service: %w", err)
	}
	for _, t := range strings.Split(*consumes, ",") {
		if t = strings.TrimSpace(t); t != "" {
			s.Consumes = append(s.Consumes, t)
		}
	}
	if err := s.check(dir); err != nil {
		return fmt.Errorf("new service %s: %w", s.Name, err)
	}
	s.Upper = strings.ToUpper(s.Name)
	for _, t := range s.Consumes {
		s.Events = append(s.Events, contract.EventsOn(t)...)
	}
	module, err := modulePath(dir)
	if err != nil {
		return err
	}
	s.Module = module
	if err := s.write(dir); err != nil {
		return err
	}
	if err := s.wire(dir); err != nil {
		return err
	}
	cmd := exec.Command("go", "tool", "-modfile=tools/go.mod", "sqlc", "generate")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("sqlc generate: %w (run make generate once it is fixed)", err)
	}
	fmt.Fprintf(out, "service %s: services/%s, cmd/%s, registered on port %d, consuming %s (%s)\n",
		s.Name, s.Name, s.Name, s.Port, strings.Join(s.Consumes, ", "), strings.Join(s.Events, ", "))
	fmt.Fprintln(out, "wired into internal/registry, internal/devstack, deploy/compose.yaml (and kafka-init), deploy/compose.secure.yaml (and secure.env.example), deploy/prometheus.yml, sqlc.yaml")
	fmt.Fprintln(out, "next: make test; then replace the log with the service's business (docs/new-service.md)")
	return nil
}

var serviceName = regexp.MustCompile(`^[a-z][a-z0-9]{1,30}$`)

// check refuses a name, port or topic the system cannot take.
func (s scaffold) check(dir string) error {
	switch {
	case !serviceName.MatchString(s.Name):
		return errors.New("the name must be 2 to 31 lower-case letters and digits, starting with a letter (it names a package, a database and topics)")
	case slices.Contains(registry.Names(), s.Name):
		return errors.New("a service of that name is registered already")
	case s.Port < 1024 || s.Port > 65535:
		return errors.New("--port must be 1024 to 65535")
	case len(s.Consumes) == 0:
		return errors.New("--consumes names no topic; the scaffold makes a consumer")
	}
	for _, dirName := range []string{"services", "cmd"} {
		if _, err := os.Stat(filepath.Join(dir, dirName, s.Name)); err == nil {
			return fmt.Errorf("%s/%s exists already", dirName, s.Name)
		}
	}
	emitted := map[string]bool{}
	for _, r := range registry.Services {
		if r.Port == s.Port {
			return fmt.Errorf("port %d is %s's", s.Port, r.Name)
		}
		for _, t := range r.Emits {
			emitted[t] = true
		}
	}
	for _, t := range s.Consumes {
		if !emitted[t] || len(contract.EventsOn(t)) == 0 {
			return fmt.Errorf("no service emits events on %q (topics with events: %s)", t, strings.Join(slices.Sorted(maps.Keys(emitted)), ", "))
		}
	}
	return nil
}

// modulePath is the module line of dir's go.mod: a fork's own.
func modulePath(dir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("run orderflowctl new service at the repository's root: %w", err)
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(raw)
	if m == nil {
		return "", errors.New("go.mod has no module line")
	}
	return string(m[1]), nil
}

// write renders the service's files.
func (s scaffold) write(dir string) error {
	files := map[string]string{
		"services/" + s.Name + "/" + s.Name + ".go":                   "service.go.tmpl",
		"services/" + s.Name + "/consume.go":                          "consume.go.tmpl",
		"services/" + s.Name + "/http.go":                             "http.go.tmpl",
		"services/" + s.Name + "/" + s.Name + "_test.go":              "test.go.tmpl",
		"services/" + s.Name + "/openapi.json":                        "openapi.json.tmpl",
		"services/" + s.Name + "/openapi.go":                          "openapi.go.tmpl",
		"services/" + s.Name + "/openapi_test.go":                     "openapi_test.go.tmpl",
		"services/" + s.Name + "/migrations/00001_" + s.Name + ".sql": "migration.sql.tmpl",
		"db/queries/" + s.Name + "/" + s.Name + ".sql":                "queries.sql.tmpl",
		"cmd/" + s.Name + "/main.go":                                  "main.go.tmpl",
	}
	for path, tmpl := range files {
		text, err := s.render(tmpl)
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".go") {
			if text, err = format.Source(text); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		full := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, text, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (s scaffold) render(name string) ([]byte, error) {
	t, err := template.New(name).Funcs(template.FuncMap{"join": strings.Join}).ParseFS(scaffoldFS, "scaffold/"+name)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, s); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b.Bytes(), nil
}

// wire adds the service to every list that names the services.
func (s scaffold) wire(dir string) error {
	pkg := s.Module + "/services/" + s.Name
	edits := []struct {
		file  string
		entry string
		imp   string
	}{
		{"internal/registry/registry.go", s.registryEntry(), ""},
		{"internal/registry/registry_test.go", fmt.Sprintf("\t\t%q: %s.DefaultHTTPAddr,\n", s.Name, s.Name), pkg},
		{"internal/devstack/devstack.go", fmt.Sprintf("\tnewUnit(%q, %s.ConfigFromEnv, %s.Run),\n", s.Name, s.Name, s.Name), pkg},
	}
	for _, e := range edits {
		if err := editFile(dir, e.file, func(src []byte) ([]byte, error) {
			src, err := beforeMarker(src, e.entry)
			if err == nil && e.imp != "" {
				src, err = addImport(src, e.imp)
			}
			if err == nil {
				src, err = format.Source(src)
			}
			return src, err
		}); err != nil {
			return err
		}
	}
	block, err := s.render("compose.yaml.tmpl")
	if err != nil {
		return err
	}
	if err := editFile(dir, "deploy/compose.yaml", func(src []byte) ([]byte, error) {
		src, err := beforeMarker(src, string(block))
		if err != nil {
			return nil, err
		}
		topics := slices.Clone(registry.Topics())
		if s.Emits {
			topics = append(topics, s.Name)
		}
		topics = append(topics, "dlq."+s.Name)
		re := regexp.MustCompile(`(?m)^(\s+TOPICS: ).*$`)
		if !re.Match(src) {
			return nil, errors.New("no TOPICS: line (kafka-init)")
		}
		return re.ReplaceAll(src, []byte("${1}"+strings.Join(topics, " "))), nil
	}); err != nil {
		return err
	}
	if err := s.wireSecure(dir); err != nil {
		return err
	}
	if err := editFile(dir, "deploy/prometheus.yml", func(src []byte) ([]byte, error) {
		job := fmt.Sprintf("  - job_name: %s\n    metrics_path: /metrics\n    static_configs:\n      - targets: [\"%s:%d\"]\n        labels:\n          service: %s\n",
			s.Name, s.Name, s.Port, s.Name)
		return append(bytes.TrimRight(src, "\n"), []byte("\n"+job)...), nil
	}); err != nil {
		return err
	}
	return editFile(dir, "sqlc.yaml", func(src []byte) ([]byte, error) {
		entry := fmt.Sprintf("  - engine: postgresql\n    schema: services/%[1]s/migrations\n    queries: db/queries/%[1]s\n    gen:\n      go:\n        package: %[1]sdb\n        out: services/%[1]s/internal/%[1]sdb\n        sql_package: pgx/v5\n", s.Name)
		i := bytes.Index(src, []byte("\noverrides:"))
		if i < 0 {
			return nil, errors.New("no overrides: section to add the entry before")
		}
		return slices.Concat(src[:i+1], []byte(entry), src[i+1:]), nil
	})
}

// Where the production profile lists each service's Kafka user and role
// password, besides its block above marker.
const (
	kafkaUserMarker    = "orderflowctl new service adds its Kafka user above this line."
	rolePasswordMarker = "orderflowctl new service adds its role password above this line."
)

// wireSecure adds the service to the production profile: its block (own
// Kafka user, role password, HTTP auth), its SCRAM user for
// kafka-bootstrap, its role password for db-bootstrap, and the two
// passwords to secure.env.example.
func (s scaffold) wireSecure(dir string) error {
	block, err := s.render("compose.secure.yaml.tmpl")
	if err != nil {
		return err
	}
	required := func(v string) string { return "${" + v + ":?set it (deploy/secure.env.example)}" }
	kafkaPassword, rolePassword := s.Upper+"_KAFKA_PASSWORD", s.Upper+"_POSTGRES_PASSWORD"
	if err := editFile(dir, "deploy/compose.secure.yaml", func(src []byte) ([]byte, error) {
		src, err := beforeLine(src, marker, string(block))
		if err == nil {
			src, err = beforeLine(src, kafkaUserMarker, fmt.Sprintf("      %s_KAFKA_USER: %s\n      %s: %s\n",
				s.Upper, s.Name, kafkaPassword, required(kafkaPassword)))
		}
		if err == nil {
			src, err = beforeLine(src, rolePasswordMarker, fmt.Sprintf("      %s: %s\n", rolePassword, required(rolePassword)))
		}
		return src, err
	}); err != nil {
		return err
	}
	return editFile(dir, "deploy/secure.env.example", func(src []byte) ([]byte, error) {
		src, err := beforeLine(src, kafkaUserMarker, kafkaPassword+"=\n")
		if err == nil {
			src, err = beforeLine(src, rolePasswordMarker, rolePassword+"=\n")
		}
		return src, err
	})
}

// registryEntry is the service's line in registry.Services.
func (s scaffold) registryEntry() string {
	consts := map[string]string{
		contract.TopicOrders: "contract.TopicOrders", contract.TopicPayments: "contract.TopicPayments",
		contract.TopicWarehouse: "contract.TopicWarehouse", contract.TopicLoyalty: "contract.TopicLoyalty",
	}
	topics := make([]string, len(s.Consumes))
	for i, t := range s.Consumes {
		if c, ok := consts[t]; ok {
			topics[i] = c
		} else {
			topics[i] = strconv.Quote(t)
		}
	}
	emits := ""
	if s.Emits {
		emits = fmt.Sprintf(",\n\t\tEmits: []string{%q}", s.Name)
	}
	return fmt.Sprintf("\t{Name: %q, Port: %d,\n\t\tConsumes: []string{%s}%s},\n", s.Name, s.Port, strings.Join(topics, ", "), emits)
}

func editFile(dir, file string, edit func([]byte) ([]byte, error)) error {
	path := filepath.Join(dir, file)
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := edit(src)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return os.WriteFile(path, out, 0o644)
}

// beforeMarker inserts entry on the line before the marker comment.
func beforeMarker(src []byte, entry string) ([]byte, error) {
	return beforeLine(src, marker, entry)
}

// beforeLine inserts entry above the line holding mark.
func beforeLine(src []byte, mark, entry string) ([]byte, error) {
	i := bytes.Index(src, []byte(mark))
	if i < 0 {
		return nil, fmt.Errorf("no %q line to add the service above", mark)
	}
	line := bytes.LastIndexByte(src[:i], '\n') + 1
	return slices.Concat(src[:line], []byte(entry), src[line:]), nil
}

// addImport adds path to the file's import block; format.Source sorts it
// into its group.
func addImport(src []byte, path string) ([]byte, error) {
	i := bytes.Index(src, []byte("import ("))
	if i < 0 {
		return nil, errors.New("no import block")
	}
	end := bytes.Index(src[i:], []byte("\n)"))
	if end < 0 {
		return nil, errors.New("unterminated import block")
	}
	at := i + end
	return slices.Concat(src[:at], []byte("\n\t"+strconv.Quote(path)), src[at:]), nil
}
