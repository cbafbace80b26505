package deploy

// The observability checks: the Grafana dashboards and the Prometheus alert
// rules parse and are wired into compose; promtool accepts the rules, the
// configuration and every dashboard expression, and runs the rules' unit
// tests (alerts_test.yml); and every metric name those expressions use is
// on a live /metrics of the services (TestQueriesUseExportedMetrics starts
// the stack in-process, as `make run` does, and drives orders through it).
//
// Metric names are taken out of PromQL by promqlSelectors, a small
// tokenizer rather than Prometheus's parser: the main module does not
// depend on Prometheus's own module, and promtool has no command that prints
// an expression's selectors. Every expression is also given to promtool
// check rules, so one the tokenizer could misread is at least valid PromQL;
// the tokenizer rejects what it does not understand instead of guessing.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// Paths, relative to this directory.
const (
	rulesFile             = "alerts.yml"
	rulesTestFile         = "alerts_test.yml"
	dashboardsDir         = "grafana/dashboards"
	dashboardProviderFile = "grafana/provisioning/dashboards/orderflow.yml"
	datasourcesDir        = "grafana/provisioning/datasources"
	runbookFile           = "../docs/runbook.md"
	runbookRepoPath       = "docs/runbook.md" // as runbook_url names it
)

// wantAlerts are the alerts the issue asks for, each with its runbook
// section (the anchor of a "## Heading" of docs/runbook.md).
var wantAlerts = map[string]string{
	"ConsumerLagGrowing":  "consumer-lag-growing",
	"DeadLettersPresent":  "dead-letters-present",
	"OutboxOldestAgeHigh": "outbox-oldest-age-high",
	"NoRelayLeader":       "no-relay-leader",
	"EmailOldestAgeHigh":  "email-oldest-age-high",
	"HTTP5xxRateHigh":     "http-5xx-rate-high",
}

// prometheusSeries are series Prometheus writes itself: no service exports
// them, so the live check leaves them out.
var prometheusSeries = map[string]bool{"up": true, "ALERTS": true, "ALERTS_FOR_STATE": true}

// prometheusLabels are the labels Prometheus attaches to every scraped
// series (deploy/prometheus.yml: job and instance, and the target label
// service), which no /metrics has.
var prometheusLabels = map[string]bool{"job": true, "instance": true, "service": true}

// --- rules ----------------------------------------------------------------------

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func (r rule) name() string {
	if r.Alert != "" {
		return "alert " + r.Alert
	}
	return "record " + r.Record
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var f ruleFile
	readYAML(t, rulesFile, &f)
	if len(f.Groups) == 0 {
		t.Fatalf("%s: no rule groups", rulesFile)
	}
	return f
}

// query is one PromQL expression and where it is used, for messages.
type query struct {
	where string
	expr  string
}

func ruleQueries(t *testing.T) []query {
	var qs []query
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			qs = append(qs, query{where: fmt.Sprintf("%s: group %q, %s", rulesFile, g.Name, r.name()), expr: r.Expr})
		}
	}
	return qs
}

// runbookAnchors returns the GitHub anchors of docs/runbook.md's headings.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatalf("the alerts' runbook: %v", err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if title, ok := strings.CutPrefix(line, "#"); ok {
			anchors[githubAnchor(strings.TrimLeft(title, "# "))] = true
		}
	}
	return anchors
}

// githubAnchor is the id GitHub gives a heading: lower case, spaces to
// hyphens, punctuation other than hyphens and underscores dropped.
func githubAnchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(title)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestAlertRules(t *testing.T) {
	f := loadRules(t)
	anchors := runbookAnchors(t)
	seen := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			where := fmt.Sprintf("%s: group %q, %s", rulesFile, g.Name, r.name())
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("%s: a rule needs exactly one of alert and record", where)
				continue
			}
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: no expr", where)
			}
			if r.Record != "" {
				continue
			}
			if seen[r.Alert] {
				t.Errorf("%s: a second alert of that name", where)
			}
			seen[r.Alert] = true
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			if sev := r.Labels["severity"]; sev != "warning" && sev != "critical" {
				t.Errorf("%s: label severity=%q; want warning or critical", where, sev)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for: %q: %v", where, r.For, err)
				}
			}
			u := r.Annotations["runbook_url"]
			file, anchor, _ := strings.Cut(u, "#")
			switch {
			case file != runbookRepoPath || anchor == "":
				t.Errorf("%s: runbook_url %q; want %s#<section>, a path in this repository", where, u, runbookRepoPath)
			case !anchors[anchor]:
				t.Errorf("%s: runbook_url %q: %s has no heading with anchor %q", where, u, runbookRepoPath, anchor)
			}
			if want, ok := wantAlerts[r.Alert]; ok && anchor != want {
				t.Errorf("%s: runbook_url %q; want %s#%s", where, u, runbookRepoPath, want)
			}
		}
	}
	for _, name := range sortedKeys(wantAlerts) {
		if !seen[name] {
			t.Errorf("%s: no alert %s", rulesFile, name)
		}
	}
}

// TestAlertRuleTests checks that alerts_test.yml tests every alert firing at
// least once, and that some test expects an alert not to fire.
func TestAlertRuleTests(t *testing.T) {
	var f struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			Name          string `yaml:"name"`
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, rulesTestFile, &f)
	if !slices.Contains(f.RuleFiles, rulesFile) {
		t.Errorf("%s: rule_files %q does not name %s", rulesTestFile, f.RuleFiles, rulesFile)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if !fires[r.Alert] {
				t.Errorf("%s: no test expects alert %s to fire", rulesTestFile, r.Alert)
			}
			if !silent[r.Alert] {
				t.Errorf("%s: no test expects alert %s not to fire (exp_alerts: [])", rulesTestFile, r.Alert)
			}
		}
	}
}

// TestPrometheusRuleFiles checks prometheus.yml's rule_files: each exists
// beside it and is mounted where Prometheus resolves it (relative to the
// configuration file's directory).
func TestPrometheusRuleFiles(t *testing.T) {
	c := loadCompose(t)
	var cfg struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	readYAML(t, prometheusFile, &cfg)
	if !slices.Contains(cfg.RuleFiles, rulesFile) {
		t.Errorf("%s: rule_files %q does not load %s", prometheusFile, cfg.RuleFiles, rulesFile)
	}
	for _, rf := range cfg.RuleFiles {
		if filepath.IsAbs(rf) || strings.ContainsAny(rf, "*?[") {
			t.Errorf("%s: rule_files entry %q: want a plain path relative to %s", prometheusFile, rf, prometheusFile)
			continue
		}
		if _, err := os.Stat(rf); err != nil {
			t.Errorf("%s: rule_files entry %q: %v", prometheusFile, rf, err)
		}
		mountsAt(t, c, "prometheus", "./"+rf, path.Join("/etc/prometheus", rf))
	}
}

// --- promtool -------------------------------------------------------------------

// promtool returns the path of promtool, failing the test with how to
// install it when it is missing: the rule tests must not pass unseen.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed (%v); these checks need it. Install it with `apt-get install -y prometheus` "+
			"(Debian's package; only /usr/bin/promtool is used, the server it brings need not run), or put Prometheus's "+
			"release promtool on PATH", err)
	}
	return p
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestPromtool(t *testing.T) {
	promtool(t)
	t.Run("check config", func(t *testing.T) { runPromtool(t, "check", "config", prometheusFile) })
	t.Run("check rules", func(t *testing.T) { runPromtool(t, "check", "rules", rulesFile) })
	t.Run("test rules", func(t *testing.T) { runPromtool(t, "test", "rules", rulesTestFile) })
	// Every dashboard expression, as a recording rule in a group named
	// after its panel, so that promtool's message says which one is wrong.
	t.Run("dashboard expressions", func(t *testing.T) {
		var groups []map[string]any
		for i, q := range dashboardQueries(t) {
			groups = append(groups, map[string]any{
				"name":  fmt.Sprintf("%d %s", i, q.where),
				"rules": []map[string]string{{"record": fmt.Sprintf("dashboard:expr_%d", i), "expr": grafanaExpand(q.expr)}},
			})
		}
		b, err := yaml.Marshal(map[string]any{"groups": groups})
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "dashboards.rules.yml")
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
		runPromtool(t, "check", "rules", file)
	})
}

// grafanaVariable matches Grafana's template variables: $name, ${name},
// ${name:format}, [[name]].
var grafanaVariable = regexp.MustCompile(`\$\{[A-Za-z0-9_]+(?::[A-Za-z]+)?\}|\$[A-Za-z0-9_]+|\[\[[A-Za-z0-9_]+\]\]`)

// grafanaVariableValue stands for a Grafana variable's value once
// grafanaExpand replaced it; the live check does not check such values.
const grafanaVariableValue = "grafana_variable"

// grafanaExpand replaces Grafana's variables with what Grafana would send:
// an interval for the interval variables, grafanaVariableValue for the
// others (which this repository's dashboards use only inside label values).
func grafanaExpand(expr string) string {
	return grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		switch strings.Trim(v, "${}[]") {
		case "__rate_interval", "__interval", "__range", "__range_s", "__interval_ms":
			return "1m"
		}
		return grafanaVariableValue
	})
}

// --- dashboards -----------------------------------------------------------------

type dashboardJSON struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []templateVar `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource *dsRef     `json:"datasource"`
	GridPos    gridPos    `json:"gridPos"`
	Targets    []target   `json:"targets"`
	Panels     []panel    `json:"panels"` // a collapsed row's
	Options    jsonObject `json:"options"`
}

type jsonObject map[string]any

type gridPos struct{ H, W, X, Y int }

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	RefID      string `json:"refId"`
	Expr       string `json:"expr"`
	Datasource *dsRef `json:"datasource"`
}

type templateVar struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource *dsRef          `json:"datasource"`
	Query      json.RawMessage `json:"query"`
}

// queryString is the variable's query: a string, or {"query": "..."}.
func (v templateVar) queryString() (string, error) {
	if len(v.Query) == 0 {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v.Query, &s); err == nil {
		return s, nil
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &o); err != nil {
		return "", fmt.Errorf("query is neither a string nor {\"query\": ...}: %v", err)
	}
	return o.Query, nil
}

type dashboardFile struct {
	path string // relative to this directory
	d    dashboardJSON
}

func loadDashboards(t *testing.T) []dashboardFile {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no dashboards in %s", dashboardsDir)
	}
	var out []dashboardFile
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboardJSON
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, dashboardFile{path: f, d: d})
	}
	return out
}

// allPanels returns the dashboard's panels, those of collapsed rows too.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// labelValuesQuery matches label_values(expr, label) and label_values(label).
var labelValuesQuery = regexp.MustCompile(`^\s*label_values\(\s*(?:(.*?)\s*,\s*)?[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)

func dashboardQueries(t *testing.T) []query {
	t.Helper()
	var qs []query
	for _, df := range loadDashboards(t) {
		for _, p := range allPanels(df.d.Panels) {
			for _, tg := range p.Targets {
				if tg.Expr != "" {
					qs = append(qs, query{where: fmt.Sprintf("%s: panel %q, query %s", df.path, p.Title, tg.RefID), expr: tg.Expr})
				}
			}
		}
		for _, v := range df.d.Templating.List {
			if v.Type != "query" {
				continue
			}
			s, err := v.queryString()
			if err != nil {
				t.Fatalf("%s: variable %q: %v", df.path, v.Name, err)
			}
			m := labelValuesQuery.FindStringSubmatch(s)
			switch {
			case m == nil:
				t.Fatalf("%s: variable %q: query %q: this test reads only label_values(...) variable queries", df.path, v.Name, s)
			case m[1] != "":
				qs = append(qs, query{where: fmt.Sprintf("%s: variable %q", df.path, v.Name), expr: m[1]})
			}
		}
	}
	return qs
}

// prometheusDatasourceUIDs returns the uids of the provisioned Prometheus
// datasources, and all provisioned datasources by uid.
func provisionedDatasources(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(datasourcesDir, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{} // uid -> type
	for _, f := range files {
		var cfg struct {
			Datasources []struct {
				UID  string `yaml:"uid"`
				Type string `yaml:"type"`
			} `yaml:"datasources"`
		}
		readYAML(t, f, &cfg)
		for _, ds := range cfg.Datasources {
			types[ds.UID] = ds.Type
		}
	}
	return types
}

func TestDashboards(t *testing.T) {
	datasources := provisionedDatasources(t)
	checkDS := func(where string, ds *dsRef) {
		switch {
		case ds == nil:
			t.Errorf("%s: no datasource; want {\"type\": \"prometheus\", \"uid\": ...} of a provisioned datasource", where)
		case datasources[ds.UID] == "":
			t.Errorf("%s: datasource uid %q is not provisioned in %s (uids: %q)", where, ds.UID, datasourcesDir, sortedKeys(datasources))
		case datasources[ds.UID] != ds.Type:
			t.Errorf("%s: datasource uid %q has type %q, not %q", where, ds.UID, datasources[ds.UID], ds.Type)
		}
	}
	uids, titles := map[string]string{}, map[string]string{}
	for _, df := range loadDashboards(t) {
		d, f := df.d, df.path
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: want a uid and a title", f)
		}
		if prev, ok := uids[d.UID]; ok {
			t.Errorf("%s: uid %q is also %s's", f, d.UID, prev)
		}
		if prev, ok := titles[d.Title]; ok {
			t.Errorf("%s: title %q is also %s's", f, d.Title, prev)
		}
		uids[d.UID], titles[d.Title] = f, f
		for _, v := range d.Templating.List {
			if v.Type == "query" {
				checkDS(fmt.Sprintf("%s: variable %q", f, v.Name), v.Datasource)
			}
		}
		ids := map[int]bool{}
		var placed []panel
		for _, p := range allPanels(d.Panels) {
			where := fmt.Sprintf("%s: panel %q", f, p.Title)
			if p.Title == "" {
				t.Errorf("%s: panel id %d has no title", f, p.ID)
			}
			if ids[p.ID] {
				t.Errorf("%s: a second panel with id %d", where, p.ID)
			}
			ids[p.ID] = true
			g := p.GridPos
			if g.W < 1 || g.H < 1 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				t.Errorf("%s: gridPos %+v is outside the 24-column grid", where, g)
			}
			for _, q := range placed {
				o := q.GridPos
				if g.X < o.X+o.W && o.X < g.X+g.W && g.Y < o.Y+o.H && o.Y < g.Y+g.H {
					t.Errorf("%s: gridPos %+v overlaps panel %q at %+v", where, g, q.Title, o)
				}
			}
			placed = append(placed, p)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no queries", where)
			}
			checkDS(where, p.Datasource)
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: query %s has no expr", where, tg.RefID)
				}
				if tg.Datasource != nil {
					checkDS(fmt.Sprintf("%s: query %s", where, tg.RefID), tg.Datasource)
				}
			}
		}
	}
	// Every expression tokenizes, and names at least one metric.
	for _, q := range dashboardQueries(t) {
		sels, err := promqlSelectors(grafanaExpand(q.expr))
		if err != nil {
			t.Errorf("%s: %v in %q", q.where, err, q.expr)
		} else if len(sels) == 0 {
			t.Errorf("%s: %q names no metric", q.where, q.expr)
		}
	}
}

// TestDashboardProvisioning checks that Grafana loads the dashboards: the
// provider's path is where compose mounts grafana/dashboards, and the home
// dashboard is one of them.
func TestDashboardProvisioning(t *testing.T) {
	c := loadCompose(t)
	var cfg struct {
		Providers []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, dashboardProviderFile, &cfg)
	if len(cfg.Providers) == 0 {
		t.Fatalf("%s: no providers", dashboardProviderFile)
	}
	mountsAt(t, c, "grafana", "./grafana/provisioning", "/etc/grafana/provisioning")
	for _, p := range cfg.Providers {
		if p.Type != "file" {
			t.Errorf("%s: provider %q has type %q; want file", dashboardProviderFile, p.Name, p.Type)
		}
		mountsAt(t, c, "grafana", "./"+dashboardsDir, p.Options.Path)
	}
	g := c.Services["grafana"]
	if g == nil {
		return
	}
	if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
		found := false
		for _, p := range cfg.Providers {
			if rel, ok := strings.CutPrefix(home, p.Options.Path+"/"); ok {
				if _, err := os.Stat(filepath.Join(dashboardsDir, rel)); err == nil {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("%s: grafana: GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH=%s is not a dashboard of %s as mounted", composeFile, home, dashboardsDir)
		}
	}
}

// --- PromQL selectors -----------------------------------------------------------

// selector is a vector selector of an expression: its metric name and the
// labels its matchers name, with the values of its equality matchers.
type selector struct {
	metric string
	labels []string            // every label a matcher names
	equals map[string]string   // label="value" matchers
	alts   map[string][]string // label=~"a|b|c" matchers whose regexp is only literal alternatives
}

var (
	promqlKeywords = map[string]bool{
		"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true, "offset": true, "bool": true, "inf": true, "nan": true, "atan2": true,
	}
	// labelLists are the keywords followed by a parenthesised label list.
	labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	// aggregators may be followed by by/without before their parentheses.
	aggregators = map[string]bool{
		"sum": true, "avg": true, "count": true, "min": true, "max": true, "group": true, "stddev": true, "stdvar": true,
		"topk": true, "bottomk": true, "quantile": true, "count_values": true, "limitk": true, "limit_ratio": true,
	}
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// promqlSelectors returns the vector selectors of a PromQL expression: each
// identifier that is not a keyword, a function or an aggregation, nor a
// label of a by/without/on/ignoring/group_left/group_right list, with its
// {matchers}; and {__name__="..."} selectors. Strings, numbers, durations,
// [ranges] and [subquery:steps] are skipped. It returns an error on
// anything else rather than guess.
func promqlSelectors(expr string) ([]selector, error) {
	var out []selector
	n := len(expr)
	skipSpace := func(i int) int {
		for i < n {
			switch c := expr[i]; {
			case c == ' ' || c == '\t' || c == '\n' || c == '\r':
				i++
			case c == '#':
				for i < n && expr[i] != '\n' {
					i++
				}
			default:
				return i
			}
		}
		return i
	}
	ident := func(i int) (string, int) {
		j := i
		for j < n && isIdentChar(expr[j]) {
			j++
		}
		return expr[i:j], j
	}
	i := 0
	for {
		i = skipSpace(i)
		if i >= n {
			return out, nil
		}
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			_, j, err := promqlString(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unclosed [ at offset %d", i)
			}
			i += j + 1
		case c == '{':
			sel, j, err := promqlMatchers(expr, i)
			if err != nil {
				return nil, err
			}
			if sel.metric == "" {
				return nil, fmt.Errorf("selector at offset %d has no metric name", i)
			}
			out = append(out, sel)
			i = j
		case isDigit(c) || (c == '.' && i+1 < n && isDigit(expr[i+1])):
			// A number (1, 0.5, 1e-3, 0x1f) or a duration (5m, 1h30m).
			j := i
			for j < n && (isIdentChar(expr[j]) || expr[j] == '.' ||
				((expr[j] == '+' || expr[j] == '-') && (expr[j-1] == 'e' || expr[j-1] == 'E') && !strings.HasPrefix(expr[i:], "0x"))) {
				j++
			}
			i = j
		case isIdentStart(c):
			word, j := ident(i)
			lower := strings.ToLower(word)
			k := skipSpace(j)
			next := byte(0)
			if k < n {
				next = expr[k]
			}
			switch {
			case labelLists[lower] && next == '(':
				e := strings.IndexByte(expr[k:], ')')
				if e < 0 {
					return nil, fmt.Errorf("unclosed %s( at offset %d", word, k)
				}
				i = k + e + 1
			case promqlKeywords[lower]:
				i = j
			case next == '(': // a function or an aggregation
				i = j
			case aggregators[lower] && isIdentStart(next):
				if w, _ := ident(k); w == "by" || w == "without" {
					i = j
					continue
				}
				return nil, fmt.Errorf("aggregation %s followed by %q at offset %d", word, expr[k:], k)
			default:
				sel := selector{metric: word}
				i = j
				if next == '{' {
					m, e, err := promqlMatchers(expr, k)
					if err != nil {
						return nil, err
					}
					if m.metric != "" {
						return nil, fmt.Errorf("%s{__name__=...} at offset %d names two metrics", word, k)
					}
					sel.labels, sel.equals, sel.alts, i = m.labels, m.equals, m.alts, e
				}
				out = append(out, sel)
			}
		case strings.IndexByte("+-*/%^=!<>~,()@", c) >= 0:
			i++
		default:
			return nil, fmt.Errorf("unexpected %q at offset %d", c, i)
		}
	}
}

// promqlMatchers reads {label op "value", ...} starting at expr[i] == '{'.
// A __name__="x" matcher sets metric.
func promqlMatchers(expr string, i int) (selector, int, error) {
	sel := selector{equals: map[string]string{}, alts: map[string][]string{}}
	n := len(expr)
	i++ // {
	for {
		for i < n && strings.IndexByte(" \t\r\n,", expr[i]) >= 0 {
			i++
		}
		if i >= n {
			return sel, i, errors.New("unclosed {")
		}
		if expr[i] == '}' {
			return sel, i + 1, nil
		}
		j := i
		for j < n && isIdentChar(expr[j]) {
			j++
		}
		label := expr[i:j]
		if label == "" {
			return sel, i, fmt.Errorf("want a label name at offset %d, found %q", i, expr[i])
		}
		for j < n && (expr[j] == ' ' || expr[j] == '\t') {
			j++
		}
		op := ""
		for _, o := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(expr[j:], o) {
				op = o
				break
			}
		}
		if op == "" {
			return sel, j, fmt.Errorf("label %s: want =, !=, =~ or !~ at offset %d", label, j)
		}
		j += len(op)
		for j < n && (expr[j] == ' ' || expr[j] == '\t') {
			j++
		}
		value, e, err := promqlString(expr, j)
		if err != nil {
			return sel, j, fmt.Errorf("label %s: %w", label, err)
		}
		switch {
		case label == "__name__" && op == "=":
			sel.metric = value
		case label == "__name__":
			return sel, j, fmt.Errorf("__name__%s at offset %d: this test reads only __name__=\"...\"", op, j)
		default:
			sel.labels = append(sel.labels, label)
			switch {
			case op == "=":
				sel.equals[label] = value
			case op == "=~" && literalAlternatives.MatchString(value):
				sel.alts[label] = strings.Split(value, "|")
			}
		}
		i = e
	}
}

// literalAlternatives matches a regexp that is only words separated by |.
var literalAlternatives = regexp.MustCompile(`^[A-Za-z0-9_]+(?:\|[A-Za-z0-9_]+)*$`)

// promqlString reads the string literal at expr[i], returning its value.
func promqlString(expr string, i int) (string, int, error) {
	if i >= len(expr) || strings.IndexByte("\"'`", expr[i]) < 0 {
		return "", i, fmt.Errorf("want a string at offset %d", i)
	}
	q := expr[i]
	j := i + 1
	for j < len(expr) && expr[j] != q {
		if expr[j] == '\\' && q != '`' {
			j++
		}
		j++
	}
	if j >= len(expr) {
		return "", i, fmt.Errorf("unclosed string at offset %d", i)
	}
	raw := expr[i : j+1]
	if q == '\'' { // Go has no single-quoted strings: requote
		raw = `"` + strings.ReplaceAll(strings.ReplaceAll(raw[1:len(raw)-1], `\'`, `'`), `"`, `\"`) + `"`
	}
	v, err := strconv.Unquote(raw)
	if err != nil {
		return "", i, fmt.Errorf("string at offset %d: %v", i, err)
	}
	return v, j + 1, nil
}

func TestPromQLSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string // metric{label=value,label}
	}{
		{`up`, []string{"up"}},
		{`sum by (group, topic) (orderflow_consumer_lag) > 1000`, []string{"orderflow_consumer_lag"}},
		{`deriv(sum by (group, topic) (orderflow_consumer_lag)[10m:30s]) > 0`, []string{"orderflow_consumer_lag"}},
		{`sum(rate(a_total{code=~"5..", route!="/readyz"}[5m])) by (service) / on(service) group_left(x) b`, []string{"a_total{code,route}", "b"}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket{service=~"x"}[1m])))`, []string{"h_bucket{service=~x}"}},
		{`count(ALERTS{alertstate="firing"}) or vector(0)`, []string{"ALERTS{alertstate=firing}"}},
		{`{__name__="m", queue=~".*\\.dead"} offset 5m`, []string{"m{queue}"}},
		{`max without (instance) (g @ end()) unless ignoring (job) h > bool 1e-3`, []string{"g", "h"}},
		{`topk(3, x{a='it''s'})`, nil}, // malformed: two strings
		{"sum by (a) (\n  # a comment naming no_metric\n  m{a=\"b\"}\n)", []string{"m{a=b}"}},
		{`count_values("le", v) + label_replace(w, "dst", "$1", "src", "(.*)")`, []string{"v", "w"}},
		{`rate(x[$__rate_interval])`, []string{"x"}},
		{`y{event=~"A|B", job=~"a.*|b", q=~"one"}`, []string{"y{event=~A,B,job,q=~one}"}},
		{`sum by (a) $b`, nil},
	} {
		sels, err := promqlSelectors(tc.expr)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%q: want an error, got %v", tc.expr, sels)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			var ls []string
			for _, l := range s.labels {
				if v, ok := s.equals[l]; ok {
					ls = append(ls, l+"="+v)
				} else if alts, ok := s.alts[l]; ok {
					ls = append(ls, l+"=~"+strings.Join(alts, ","))
				} else {
					ls = append(ls, l)
				}
			}
			if len(ls) > 0 {
				got = append(got, s.metric+"{"+strings.Join(ls, ",")+"}")
			} else {
				got = append(got, s.metric)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: selectors %q; want %q", tc.expr, got, tc.want)
		}
	}
}

// --- a live scrape --------------------------------------------------------------

// scrape is what the services' /metrics showed: each sample name (a
// histogram's _bucket, _sum and _count, and its family name from # TYPE)
// with the label names and values seen on it.
type scrape map[string]map[string]map[string]bool // name -> label -> values

func (s scrape) add(name string, labels map[string]string) {
	if s[name] == nil {
		s[name] = map[string]map[string]bool{}
	}
	for k, v := range labels {
		if s[name][k] == nil {
			s[name][k] = map[string]bool{}
		}
		s[name][k][v] = true
	}
}

// parseExposition reads Prometheus's text format into s.
func parseExposition(s scrape, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				s.add(f[0], nil)
			}
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			return fmt.Errorf("sample line %q", line)
		}
		name, labels := line[:end], map[string]string{}
		if line[end] == '{' {
			i := end + 1
			for i < len(line) && line[i] != '}' {
				eq := strings.IndexByte(line[i:], '=')
				if eq < 0 {
					return fmt.Errorf("sample line %q", line)
				}
				label := strings.TrimSpace(strings.TrimLeft(line[i:i+eq], ","))
				v, j, err := promqlString(line, i+eq+1)
				if err != nil {
					return fmt.Errorf("sample line %q: %v", line, err)
				}
				labels[label] = v
				i = j
				if i < len(line) && line[i] == ',' {
					i++
				}
			}
		}
		s.add(name, labels)
	}
	return sc.Err()
}

// missing reports what of sel the scrape lacks: the metric, a label, or
// the value of an equality matcher; "" when nothing.
func (s scrape) missing(sel selector) string {
	if prometheusSeries[sel.metric] {
		return ""
	}
	labels, ok := s[sel.metric]
	if !ok {
		return fmt.Sprintf("metric %s is on no service's /metrics", sel.metric)
	}
	for _, l := range sel.labels {
		if prometheusLabels[l] {
			continue
		}
		values, ok := labels[l]
		if !ok {
			return fmt.Sprintf("metric %s has no label %q on any service's /metrics (labels seen: %q)", sel.metric, l, sortedKeys(labels))
		}
		if v, ok := sel.equals[l]; ok && !values[v] && !strings.Contains(v, grafanaVariableValue) {
			return fmt.Sprintf("metric %s never has %s=%q on any service's /metrics (values seen: %q)", sel.metric, l, v, sortedKeys(values))
		}
		for _, v := range sel.alts[l] {
			if !values[v] && !strings.Contains(v, grafanaVariableValue) {
				return fmt.Sprintf("metric %s never has %s=%q (of %s=~%q) on any service's /metrics (values seen: %q)", sel.metric, l, v, l, strings.Join(sel.alts[l], "|"), sortedKeys(values))
			}
		}
	}
	return ""
}

// allQueries are the dashboards' and the rules' expressions.
func allQueries(t *testing.T) []query {
	return append(dashboardQueries(t), ruleQueries(t)...)
}

// TestQueriesUseExportedMetrics starts the whole stack in-process (as
// `make run` does, each service on a fresh database and a free port, the
// embedded broker on a free port, the email queues under a prefix of their
// own), drives orders through it until the vectors that appear only on
// their first observation are there, then scrapes every service's /metrics
// and checks each selector of every dashboard and rule expression against
// them: the metric, every label its matchers name (those Prometheus adds
// aside), the value of each label="value" matcher, and each alternative of
// a label=~"a|b|c" matcher made only of literal words.
func TestQueriesUseExportedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole stack")
	}
	type use struct {
		sel   selector
		where string
	}
	var uses []use
	for _, q := range allQueries(t) {
		sels, err := promqlSelectors(grafanaExpand(q.expr))
		if err != nil {
			t.Fatalf("%s: %v in %q", q.where, err, q.expr)
		}
		for _, s := range sels {
			uses = append(uses, use{s, q.where})
		}
	}

	s := startLiveStack(t)
	s.drive(t)

	// Poll: some series appear only once their first event happened
	// (a timer fired, a dead letter, an order shipped).
	var got scrape
	var problems map[string][]string // problem -> where
	deadline := time.Now().Add(90 * time.Second)
	for {
		got = s.scrapeAll(t)
		problems = map[string][]string{}
		for _, u := range uses {
			if p := got.missing(u.sel); p != "" && !slices.Contains(problems[p], u.where) {
				problems[p] = append(problems[p], u.where)
			}
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	for _, p := range sortedKeys(problems) {
		t.Errorf("%s, after orders went through the stack; used by:\n\t%s", p, strings.Join(problems[p], "\n\t"))
	}
	if len(problems) > 0 {
		var names []string
		for name := range got {
			if strings.HasPrefix(name, "orderflow_") {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		t.Logf("orderflow_* names on the services' /metrics: %s", strings.Join(names, " "))
	}
}
