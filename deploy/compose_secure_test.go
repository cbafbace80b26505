package deploy

import (
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

// The production profile (compose.secure.yaml), an override of compose.yaml,
// and the list of the variables it needs.
const (
	secureFile    = "compose.secure.yaml"
	secureEnvFile = "secure.env.example"
)

// loadSecure returns compose.yaml with compose.secure.yaml merged over it
// as `docker compose -f compose.yaml -f compose.secure.yaml` merges them:
// environment and depends_on key by key, image, build, command and
// healthcheck replaced, new services added. It also returns the override
// alone.
func loadSecure(t *testing.T) (merged, override *composeSpec) {
	t.Helper()
	merged = loadCompose(t)
	override = &composeSpec{}
	readYAML(t, secureFile, override)
	for _, name := range sortedKeys(override.Services) {
		o := override.Services[name]
		base, ok := merged.Services[name]
		if !ok {
			merged.Services[name] = o
			continue
		}
		if o.Image != "" {
			base.Image = o.Image
		}
		if o.Build != nil {
			base.Build = o.Build
		}
		if len(o.Command) > 0 {
			base.Command = o.Command
		}
		if o.Healthcheck != nil {
			base.Healthcheck = o.Healthcheck
		}
		if base.Environment == nil {
			base.Environment = mapping{}
		}
		for k, v := range o.Environment {
			base.Environment[k] = v
		}
		if base.DependsOn == nil {
			base.DependsOn = dependsOn{}
		}
		for k, v := range o.DependsOn {
			base.DependsOn[k] = v
		}
	}
	return merged, override
}

// interpolation is a compose variable reference: ${NAME}, ${NAME:-default},
// ${NAME:?message} and the like. $$ is a literal $ and is dropped first.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}`)

// requiredRef is the reference that makes compose refuse to start while
// name is unset or empty.
func requiredRef(name string) *regexp.Regexp {
	return regexp.MustCompile(`^\$\{` + regexp.QuoteMeta(name) + `:\?[^}]+\}$`)
}

// placeholder is what expand puts for variable name: a value that parses
// in a URL (a reference's ":?message" would start the URL's query).
func placeholder(name string) string { return "value-of-" + name }

// expand replaces every variable reference in v with its placeholder, as
// compose would with the variables' values.
func expand(v string) string {
	return interpolation.ReplaceAllStringFunc(v, func(ref string) string {
		return placeholder(interpolation.FindStringSubmatch(ref)[1])
	})
}

// expanded is a copy of c whose environment values are expanded.
func expanded(c *composeSpec) *composeSpec {
	out := &composeSpec{Services: map[string]*service{}, Volumes: c.Volumes}
	for name, s := range c.Services {
		cp := *s
		cp.Environment = mapping{}
		for k, v := range s.Environment {
			cp.Environment[k] = expand(v)
		}
		out.Services[name] = &cp
	}
	return out
}

// secretVar reports whether an environment variable holds a credential.
var secretVar = regexp.MustCompile(`PASSWORD|PASS$|SECRET|_KEYS$|COOKIE|JAAS`)

// TestSecureVariables checks that compose.secure.yaml takes every value
// from the environment only as a required variable (${VAR:?message}, so
// compose refuses to start without it), holds no literal credential, and
// that secure.env.example lists exactly the variables it uses.
func TestSecureVariables(t *testing.T) {
	b, err := os.ReadFile(secureFile)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, line := range strings.Split(strings.ReplaceAll(string(b), "$$", ""), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			lines = append(lines, line)
		}
	}
	text := strings.Join(lines, "\n")
	used := map[string]bool{}
	for _, m := range interpolation.FindAllStringSubmatch(text, -1) {
		used[m[1]] = true
		if !strings.HasPrefix(m[2], ":?") || len(m[2]) < 3 {
			t.Errorf("%s: %s; want ${%s:?message}, so that compose refuses to start without it", secureFile, m[0], m[1])
		}
	}
	_, override := loadSecure(t)
	for _, name := range sortedKeys(override.Services) {
		env := override.Services[name].Environment
		for _, k := range sortedKeys(env) {
			v := env[k]
			if secretVar.MatchString(k) && !interpolation.MatchString(v) {
				t.Errorf("%s: service %q: %s is a credential given literally; want it from a required variable", secureFile, name, k)
			}
			if u, err := url.Parse(expand(v)); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && !strings.HasPrefix(pw, placeholder("")) {
					t.Errorf("%s: service %q: %s carries a literal password", secureFile, name, k)
				}
			}
		}
	}

	ex, err := os.ReadFile(secureEnvFile)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(ex), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: %q is not NAME=value", secureEnvFile, line)
			continue
		}
		listed[k] = true
		if v != "" {
			t.Errorf("%s: %s has a value; the example holds names only, never a secret", secureEnvFile, k)
		}
	}
	for _, v := range sortedKeys(used) {
		if !listed[v] {
			t.Errorf("%s: %s uses %s, which %s does not list", secureEnvFile, secureFile, v, secureEnvFile)
		}
	}
	for _, v := range sortedKeys(listed) {
		if !used[v] {
			t.Errorf("%s lists %s, which %s does not use", secureEnvFile, v, secureFile)
		}
	}
}

// TestSecureServices checks each Orderflow service under the profile: it
// sets only variables its code reads, connects to Kafka as its own SCRAM
// user with its own password, to PostgreSQL with its role's password (the
// one db-bootstrap sets), has HTTP auth on with the required API keys, and
// starts only after the bootstrap jobs; email uses its own RabbitMQ user
// and vhost.
func TestSecureServices(t *testing.T) {
	c, override := loadSecure(t)
	kb, db := c.Services["kafka-bootstrap"], c.Services["db-bootstrap"]
	if kb == nil || db == nil {
		t.Fatalf("%s: want the jobs kafka-bootstrap and db-bootstrap", secureFile)
	}
	apps := c.appServices()
	var want []string
	for _, s := range registry.Services {
		want = append(want, s.Name)
	}
	sort.Strings(want)
	if !slices.Equal(apps, want) {
		t.Errorf("%s + %s: services %q; want the registry's %q", composeFile, secureFile, apps, want)
	}
	passwords := map[string]string{} // reference -> variable that used it first
	for _, name := range apps {
		s := c.Services[name]
		o := override.Services[name]
		t.Run(name, func(t *testing.T) {
			if o == nil {
				t.Fatalf("%s: no block for service %q", secureFile, name)
			}
			U := strings.ToUpper(name)
			dirs := []string{"cmd/" + name, "services/" + name, "pkg", "internal"}
			read := envVarsRead(t, dirs...)
			// Names built from the service's name (service.PasswordVar,
			// kafka.SecurityFromEnv), not literals.
			read[U+"_POSTGRES_PASSWORD"] = true
			read[U+"_KAFKA_USER"] = true
			read[U+"_KAFKA_PASSWORD"] = true
			for _, v := range sortedKeys(o.Environment) {
				if !read[v] {
					t.Errorf("%s: service %q sets %s, which its code never reads", secureFile, name, v)
				}
			}
			env := s.Environment
			if env["KAFKA_SASL_MECHANISM"] != "SCRAM-SHA-512" {
				t.Errorf("%s: service %q: KAFKA_SASL_MECHANISM=%q; want SCRAM-SHA-512", secureFile, name, env["KAFKA_SASL_MECHANISM"])
			}
			if env[U+"_KAFKA_USER"] != name {
				t.Errorf("%s: service %q: %s_KAFKA_USER=%q; want its own user, %q", secureFile, name, U, env[U+"_KAFKA_USER"], name)
			}
			for _, v := range []string{U + "_KAFKA_PASSWORD", U + "_POSTGRES_PASSWORD", "HTTP_API_KEYS"} {
				if !requiredRef(v).MatchString(env[v]) {
					t.Errorf("%s: service %q: %s=%q; want ${%s:?message}", secureFile, name, v, env[v], v)
				}
			}
			for _, v := range []string{U + "_KAFKA_PASSWORD", U + "_POSTGRES_PASSWORD"} {
				ref := interpolation.FindStringSubmatch(env[v])
				if ref == nil {
					continue
				}
				if first, ok := passwords[ref[1]]; ok {
					t.Errorf("%s: service %q: %s is %s, which %s already uses; every service has its own", secureFile, name, v, ref[1], first)
				}
				passwords[ref[1]] = v
			}
			for _, v := range []string{U + "_KAFKA_USER", U + "_KAFKA_PASSWORD"} {
				if kb.Environment[v] != env[v] {
					t.Errorf("%s: service %q: %s differs from kafka-bootstrap's, which makes the SCRAM user", secureFile, name, v)
				}
			}
			if v := U + "_POSTGRES_PASSWORD"; db.Environment[v] != env[v] {
				t.Errorf("%s: service %q: %s differs from db-bootstrap's, which sets the role's password", secureFile, name, v)
			}
			if env["HTTP_AUTH"] != "on" {
				t.Errorf("%s: service %q: HTTP_AUTH=%q; want on", secureFile, name, env["HTTP_AUTH"])
			}
			for _, job := range []string{"kafka-bootstrap", "db-bootstrap"} {
				if s.DependsOn[job] != "service_completed_successfully" {
					t.Errorf("%s: service %q does not wait for %s to complete", secureFile, name, job)
				}
			}
			if v := env["AMQP_URL"]; v != "" || name == "email" {
				checkSecureAMQP(t, c, name, v)
			}
		})
	}
}

// checkSecureAMQP checks a service's AMQP_URL under the profile: its own
// user (not guest) with a required password, on rabbit-bootstrap's vhost,
// after rabbit-bootstrap.
func checkSecureAMQP(t *testing.T, c *composeSpec, name, raw string) {
	t.Helper()
	if err := checkURL(expanded(c), expand(raw), "amqp", "5672"); err != nil {
		t.Errorf("%s: service %q: AMQP_URL=%s: %v", secureFile, name, raw, err)
		return
	}
	u, _ := url.Parse(expand(raw))
	pw, _ := u.User.Password()
	if u.User.Username() != name || !strings.Contains(raw, ":${EMAIL_AMQP_PASSWORD:?") || pw != placeholder("EMAIL_AMQP_PASSWORD") {
		t.Errorf("%s: service %q: AMQP_URL=%s; want user %s with password ${EMAIL_AMQP_PASSWORD:?...}", secureFile, name, raw, name)
	}
	job := c.Services["rabbit-bootstrap"]
	if job == nil {
		t.Errorf("%s: no rabbit-bootstrap job to make %q's RabbitMQ user", secureFile, name)
		return
	}
	if vhost := strings.TrimPrefix(u.Path, "/"); vhost == "" || vhost != job.Environment["VHOST"] {
		t.Errorf("%s: service %q: AMQP_URL's vhost %q; want rabbit-bootstrap's VHOST %q (not the default /)", secureFile, name, vhost, job.Environment["VHOST"])
	}
	if expand(job.Environment["EMAIL_AMQP_PASSWORD"]) != pw {
		t.Errorf("%s: rabbit-bootstrap's EMAIL_AMQP_PASSWORD differs from service %q's AMQP_URL password", secureFile, name)
	}
	if c.Services[name].DependsOn["rabbit-bootstrap"] != "service_completed_successfully" {
		t.Errorf("%s: service %q does not wait for rabbit-bootstrap to complete", secureFile, name)
	}
}

// TestSecureKafka checks the broker under the profile: SCRAM-SHA-512 on
// every listener but the controller's, which binds loopback only; the
// StandardAuthorizer denying what no ACL allows; the superuser admin's
// credential written at format time; and kafka-bootstrap making users and
// ACLs from the code (it runs orderflowctl kafka bootstrap) as admin,
// after the broker is healthy.
func TestSecureKafka(t *testing.T) {
	c, _ := loadSecure(t)
	k := c.Services["kafka"]
	env := k.Environment
	protocols := map[string]string{}
	for _, pair := range strings.Split(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"], ",") {
		name, proto, _ := strings.Cut(pair, ":")
		protocols[name] = proto
	}
	controller := env["KAFKA_CONTROLLER_LISTENER_NAMES"]
	for _, l := range kafkaListeners(env["KAFKA_LISTENERS"]) {
		p := protocols[l.name]
		switch {
		case l.name == controller:
			if p != "SASL_PLAINTEXT" && p != "SASL_SSL" && l.host != "localhost" && l.host != "127.0.0.1" {
				t.Errorf("%s: kafka: controller listener %s is %s on %q; want it on loopback only, or authenticated", secureFile, l.name, p, l.host)
			}
		case p != "SASL_PLAINTEXT" && p != "SASL_SSL":
			t.Errorf("%s: kafka: listener %s is %q; want SASL_PLAINTEXT or SASL_SSL", secureFile, l.name, p)
		}
	}
	for k, want := range map[string]string{
		"KAFKA_SASL_ENABLED_MECHANISMS":              "SCRAM-SHA-512",
		"KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL": "SCRAM-SHA-512",
		"KAFKA_AUTHORIZER_CLASS_NAME":                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
		"KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND":       "false",
	} {
		if env[k] != want {
			t.Errorf("%s: kafka: %s=%q; want %q", secureFile, k, env[k], want)
		}
	}
	if !slices.Contains(strings.Split(env["KAFKA_SUPER_USERS"], ";"), "User:admin") {
		t.Errorf("%s: kafka: KAFKA_SUPER_USERS=%q; want User:admin among them", secureFile, env["KAFKA_SUPER_USERS"])
	}
	if cmd := strings.Join(k.Command, " "); !strings.Contains(cmd, "--add-scram \"SCRAM-SHA-512=[name=admin,") || !strings.Contains(cmd, "exec /etc/kafka/docker/launch") {
		t.Errorf("%s: kafka: the command must format the storage with admin's SCRAM credential, then exec the image's launch; it is %q", secureFile, cmd)
	}
	if !requiredRef("KAFKA_ADMIN_PASSWORD").MatchString(env["ADMIN_PASSWORD"]) {
		t.Errorf("%s: kafka: ADMIN_PASSWORD=%q; want ${KAFKA_ADMIN_PASSWORD:?...}", secureFile, env["ADMIN_PASSWORD"])
	}
	if hc := k.Healthcheck; hc == nil || !strings.Contains(hc.Test.String(), "--command-config") {
		t.Errorf("%s: kafka: the healthcheck must authenticate (--command-config), or the SASL listener refuses it", secureFile)
	}

	job := c.Services["kafka-bootstrap"]
	if job == nil {
		t.Fatalf("%s: no kafka-bootstrap job", secureFile)
	}
	if job.Build == nil || job.Build.Args["SERVICE"] != "orderflowctl" || strings.Join(job.Command, " ") != "kafka bootstrap" {
		t.Errorf("%s: kafka-bootstrap must build SERVICE=orderflowctl and run [kafka, bootstrap], so the topics, users and ACLs are the code's", secureFile)
	}
	if job.DependsOn["kafka"] != "service_healthy" {
		t.Errorf("%s: kafka-bootstrap must wait for kafka to be healthy", secureFile)
	}
	if !c.oneShot("kafka-bootstrap") || (job.Restart != "" && job.Restart != "no") {
		t.Errorf("%s: kafka-bootstrap must be a one-shot job others wait for, with restart: \"no\"", secureFile)
	}
	if job.Environment["KAFKA_SASL_USER"] != "admin" || job.Environment["KAFKA_SASL_PASSWORD"] != env["ADMIN_PASSWORD"] || job.Environment["KAFKA_SASL_MECHANISM"] != "SCRAM-SHA-512" {
		t.Errorf("%s: kafka-bootstrap must authenticate as the superuser admin with SCRAM-SHA-512 and kafka's ADMIN_PASSWORD", secureFile)
	}
	if b := job.Environment["KAFKA_BROKERS"]; !slices.Contains(kafkaAdvertised(c), b) {
		t.Errorf("%s: kafka-bootstrap: KAFKA_BROKERS=%q is not an advertised listener (%q)", secureFile, b, kafkaAdvertised(c))
	}
	read := envVarsRead(t, "cmd/orderflowctl", "pkg", "internal")
	for _, s := range registry.Services {
		read[strings.ToUpper(s.Name)+"_KAFKA_USER"] = true
		read[strings.ToUpper(s.Name)+"_KAFKA_PASSWORD"] = true
	}
	for _, v := range sortedKeys(job.Environment) {
		if !read[v] {
			t.Errorf("%s: kafka-bootstrap sets %s, which orderflowctl never reads", secureFile, v)
		}
	}
	// The old plaintext topic job must not talk to the broker, and runs
	// after kafka-bootstrap.
	if ki := c.Services["kafka-init"]; ki != nil {
		if strings.Contains(strings.Join(ki.Command, " "), "kafka-topics.sh") || ki.DependsOn["kafka-bootstrap"] != "service_completed_successfully" {
			t.Errorf("%s: kafka-init would speak plaintext to the SASL listener; want it a no-op after kafka-bootstrap", secureFile)
		}
	}
}

// TestSecurePostgres checks that PostgreSQL authenticates every connection
// with scram-sha-256, its superuser's password is required, and db-bootstrap
// runs as that superuser with it.
func TestSecurePostgres(t *testing.T) {
	c, override := loadSecure(t)
	env := c.Services["postgres"].Environment
	if env["POSTGRES_HOST_AUTH_METHOD"] != "scram-sha-256" {
		t.Errorf("%s: postgres: POSTGRES_HOST_AUTH_METHOD=%q; want scram-sha-256", secureFile, env["POSTGRES_HOST_AUTH_METHOD"])
	}
	if a := env["POSTGRES_INITDB_ARGS"]; !strings.Contains(a, "--auth-local=scram-sha-256") || !strings.Contains(a, "--auth-host=scram-sha-256") {
		t.Errorf("%s: postgres: POSTGRES_INITDB_ARGS=%q; want --auth-host=scram-sha-256 --auth-local=scram-sha-256", secureFile, a)
	}
	if !requiredRef("POSTGRES_PASSWORD").MatchString(env["POSTGRES_PASSWORD"]) {
		t.Errorf("%s: postgres: POSTGRES_PASSWORD=%q; want ${POSTGRES_PASSWORD:?...}", secureFile, env["POSTGRES_PASSWORD"])
	}
	admin := c.Services["db-bootstrap"].Environment["POSTGRES_ADMIN_URL"]
	u, err := url.Parse(expand(admin))
	if err != nil {
		t.Fatalf("%s: db-bootstrap: POSTGRES_ADMIN_URL: %v", secureFile, err)
	}
	if pw, _ := u.User.Password(); u.User.Username() != "postgres" || pw != expand(env["POSTGRES_PASSWORD"]) {
		t.Errorf("%s: db-bootstrap: POSTGRES_ADMIN_URL=%s; want the superuser postgres with postgres's POSTGRES_PASSWORD", secureFile, admin)
	}
	if err := checkURL(expanded(c), expand(admin), "postgres", "5432"); err != nil {
		t.Errorf("%s: db-bootstrap: POSTGRES_ADMIN_URL: %v", secureFile, err)
	}
	read := envVarsRead(t, "cmd/orderflowctl", "pkg", "internal")
	for _, v := range sortedKeys(override.Services["db-bootstrap"].Environment) {
		if !read[v] && !strings.HasSuffix(v, "_POSTGRES_PASSWORD") {
			t.Errorf("%s: db-bootstrap sets %s, which orderflowctl never reads", secureFile, v)
		}
	}
}

// TestSecureRabbit checks RabbitMQ under the profile: no guest, the Erlang
// cookie shared by the node and rabbit-bootstrap (rabbitmqctl needs it),
// and the email user's permissions exactly the code's
// (rabbit.Topology.Permissions).
func TestSecureRabbit(t *testing.T) {
	c, _ := loadSecure(t)
	r := c.Services["rabbitmq"].Environment
	if u := r["RABBITMQ_DEFAULT_USER"]; u == "" || u == "guest" {
		t.Errorf("%s: rabbitmq: RABBITMQ_DEFAULT_USER=%q; want an administrator other than guest", secureFile, u)
	}
	job := c.Services["rabbit-bootstrap"]
	if job == nil {
		t.Fatalf("%s: no rabbit-bootstrap job", secureFile)
	}
	if job.Image != c.Services["rabbitmq"].Image {
		t.Errorf("%s: rabbit-bootstrap runs %q; want rabbitmq's image %q, whose rabbitmqctl matches the node", secureFile, job.Image, c.Services["rabbitmq"].Image)
	}
	if cookie := r["RABBITMQ_ERLANG_COOKIE"]; !requiredRef("RABBITMQ_ERLANG_COOKIE").MatchString(cookie) || job.Environment["RABBITMQ_ERLANG_COOKIE"] != cookie {
		t.Errorf("%s: rabbitmq and rabbit-bootstrap must share RABBITMQ_ERLANG_COOKIE from ${RABBITMQ_ERLANG_COOKIE:?...}", secureFile)
	}
	configure, write, read := rabbit.EmailTopology(nil).Permissions()
	got := strings.ReplaceAll(job.Environment["PERMISSIONS"], "$$", "$")
	if got != configure || got != write || got != read {
		t.Errorf("%s: rabbit-bootstrap: PERMISSIONS=%q; want the code's %q (rabbit.Topology.Permissions)", secureFile, got, configure)
	}
	cmd := strings.Join(job.Command, " ")
	if !strings.Contains(cmd, `set_permissions -p "$$VHOST" email "$$PERMISSIONS" "$$PERMISSIONS" "$$PERMISSIONS"`) || !strings.Contains(cmd, "delete_user guest") {
		t.Errorf("%s: rabbit-bootstrap must set email's permissions to PERMISSIONS on VHOST and delete guest; it runs %q", secureFile, cmd)
	}
	if job.DependsOn["rabbitmq"] != "service_healthy" {
		t.Errorf("%s: rabbit-bootstrap must wait for rabbitmq to be healthy", secureFile)
	}
}

// TestSecureDefaults checks what the profile must leave nowhere in the
// merged stack: guest, trust, a password-less superuser URL, an unpinned
// image, a dependency on a missing service, a restarting job, and a built
// job without compose.yaml's hardening.
func TestSecureDefaults(t *testing.T) {
	c, _ := loadSecure(t)
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		for _, k := range sortedKeys(s.Environment) {
			v := s.Environment[k]
			if strings.Contains(v, "guest") && k != "RABBITMQ_DEFAULT_USER" {
				t.Errorf("%s + %s: service %q: %s=%q uses guest", composeFile, secureFile, name, k, v)
			}
			if strings.EqualFold(v, "trust") {
				t.Errorf("%s + %s: service %q: %s=trust", composeFile, secureFile, name, k)
			}
			if u, err := url.Parse(expand(v)); err == nil && u.User != nil {
				if pw, _ := u.User.Password(); pw == "postgres" || pw == "guest" {
					t.Errorf("%s + %s: service %q: %s carries the default password %q", composeFile, secureFile, name, k, pw)
				}
			}
		}
		if s.Build == nil {
			if err := checkPinned(s.Image); err != nil {
				t.Errorf("%s: service %q: %v", secureFile, name, err)
			}
		} else if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") || len(s.SecurityOpt) == 0 {
			t.Errorf("%s: service %q is built from the Dockerfile without read_only, cap_drop [ALL] and no-new-privileges", secureFile, name)
		}
		for _, dep := range sortedKeys(s.DependsOn) {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s: service %q depends on %q, which is not a service", secureFile, name, dep)
			}
		}
		if c.oneShot(name) && s.Restart != "" && s.Restart != "no" {
			t.Errorf("%s: job %q has restart: %q; want \"no\"", secureFile, name, s.Restart)
		}
	}
	if pw := c.Services["postgres"].Environment["POSTGRES_PASSWORD"]; pw == "postgres" {
		t.Errorf("%s: postgres keeps the password postgres", secureFile)
	}
}
