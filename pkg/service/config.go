package service

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/telemetry"
)

// Config is the configuration every service shares. Zero fields take the
// defaults of SetDefaults.
type Config struct {
	Name        string // "payments": database orderflow_payments, group orderflow-payments, ce_source orderflow/payments
	HTTPAddr    string // listen address, from <NAME>_HTTP_ADDR
	PostgresURL string // the server; the service uses its database Database on it, as its role Role
	Database    string // default "orderflow_<name>"
	// Role is the PostgreSQL role the service connects as, whatever user
	// PostgresURL names, and PostgresPassword its password
	// (<NAME>_POSTGRES_PASSWORD; "" for a trust server). The role owns
	// Database and nothing else; postgres.Bootstrap (orderflowctl db
	// bootstrap, make run) creates both. "" is Database's name (RoleName).
	Role             string
	PostgresPassword string
	MaxConns         int32           // the service pool's size (requests, timers); default DefaultMaxConns
	Brokers          []string        // Kafka seed brokers; default the dev stack's 127.0.0.1:9092
	Kafka            kafka.Security  // how its Kafka clients authenticate (SASL, TLS); zero: plaintext, none; User defaults to Name
	Auth             httpserver.Auth // who may call its HTTP API (HTTP_AUTH...); zero: anyone
	OutboxRetention  time.Duration   // published outbox rows are kept this long; default 7 days
	ShutdownTimeout  time.Duration   // how long in-flight requests may finish after ctx is done; default 7s

	// RetryBackoff is the consumer's first retry backoff (consumer.Config
	// BaseBackoff); zero takes the consumer's default. Tests shorten it.
	RetryBackoff time.Duration

	// QuietSteps turns off the relay's info line per event published, the
	// order's step (LOG_ORDER_STEPS=off; outbox.Config.LogSteps).
	QuietSteps bool

	// Telemetry are the OTEL_* settings that turn tracing on (FromEnv
	// reads them; package telemetry).
	Telemetry telemetry.Settings
	// TracerProvider, when set, is used instead of Telemetry: a provider
	// the caller owns, such as a test's in-memory recorder.
	TracerProvider trace.TracerProvider
}

// Defaults.
const (
	DefaultBroker          = "127.0.0.1:9092" // where the dev stack's embedded broker listens
	DefaultOutboxRetention = 7 * 24 * time.Hour
	// DefaultMaxConns keeps the five services of `make run` within
	// ConnectionBudget: each holds its pool (requests and timers), its
	// consumer's (consumer.DefaultTransactions, its joint transactions,
	// whatever its partition count) and its relay's (outbox.Connections),
	// 5 × (3 + 2 + 2) = 35 of PostgreSQL's default 100 at peak. The
	// consumer and the relay have pools of their own so that a flood of
	// requests cannot starve them; transactions beyond a pool wait in
	// Acquire, on their context, and do not fail.
	DefaultMaxConns = 3
	// ConnectionBudget is the most connections the five services of
	// `make run` may hold together at their defaults, start and peak load
	// included; internal/devstack's TestConnectionBudget holds them to it.
	ConnectionBudget = 40
	// DefaultShutdownTimeout leaves room in the 10 s a Ctrl-C may take for
	// the relay's last cursor update and closing the pool.
	DefaultShutdownTimeout = 7 * time.Second
)

// SetDefaults fills the zero fields; name and httpAddr are the service's
// name and default listen address.
func (c *Config) SetDefaults(name, httpAddr string) {
	if c.Name == "" {
		c.Name = name
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = httpAddr
	}
	if c.PostgresURL == "" {
		c.PostgresURL = postgres.DefaultURL
	}
	c.PostgresURL = postgres.WithApplicationName(c.PostgresURL, ApplicationName(c.Name))
	if c.Database == "" {
		c.Database = "orderflow_" + c.Name
	}
	if len(c.Brokers) == 0 {
		c.Brokers = []string{DefaultBroker}
	}
	if c.Kafka.Mechanism != "" && c.Kafka.User == "" {
		c.Kafka.User = c.Name // the user its ACLs are for (registry.Service.Access)
	}
	if c.OutboxRetention == 0 {
		c.OutboxRetention = DefaultOutboxRetention
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
}

// FromEnv reads the shared variables of docs/design.md into a Config for the
// named service: POSTGRES_URL, KAFKA_BROKERS (empty: the dev stack's
// broker), OUTBOX_RETENTION (a Go duration or days, "7d"),
// <NAME>_HTTP_ADDR (default httpAddr), DATABASE_PREFIX (default
// "orderflow_": the database is the prefix and the service's name),
// POSTGRES_MAX_CONNS (every service pool's size, default DefaultMaxConns;
// the consumer adds consumer.DefaultTransactions and the relay
// outbox.Connections) and <NAME>_POSTGRES_MAX_CONNS (this
// service's, over POSTGRES_MAX_CONNS). Problems are collected in e, so the
// caller reports them with its own in one line.
func FromEnv(e *config.Env, name, httpAddr string) Config {
	c := Config{
		Name:        name,
		HTTPAddr:    e.String(AddrVar(name), httpAddr),
		PostgresURL: e.String("POSTGRES_URL", postgres.DefaultURL),
		Brokers:     kafka.ParseBrokers(e.String("KAFKA_BROKERS", "")),
		Kafka:       kafka.SecurityFromEnv(e, name),
		Auth:        httpserver.AuthFromEnv(e),
	}
	if prefix := e.String("DATABASE_PREFIX", ""); prefix != "" {
		// A whole second stack on one server (make chaos beside make run).
		if strings.Trim(prefix, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			e.Reject("DATABASE_PREFIX", "lower-case letters, digits and _ only (e.g. orderflow_chaos_)")
		}
		c.Database = prefix + name
	}
	c.PostgresPassword = e.String(PasswordVar(name), "")
	c.QuietSteps = e.OneOf("LOG_ORDER_STEPS", "on", "on", "off") == "off"
	c.Telemetry = telemetry.SettingsFromEnv()
	if _, err := c.Telemetry.Enabled(); err != nil {
		if se, ok := errors.AsType[*telemetry.SettingError](err); ok {
			e.Reject(se.Var, se.Reason)
		}
	}
	c.MaxConns = maxConns(e, "POSTGRES_MAX_CONNS", DefaultMaxConns)
	c.MaxConns = maxConns(e, MaxConnsVar(name), c.MaxConns)
	c.OutboxRetention = e.Duration("OUTBOX_RETENTION", DefaultOutboxRetention)
	if c.OutboxRetention == 0 {
		e.Reject("OUTBOX_RETENTION", "must be positive (e.g. 7d, 36h)")
	}
	if c.HTTPAddr == "" {
		e.Reject(AddrVar(name), "empty listen address")
	}
	if u, err := url.Parse(c.PostgresURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		e.Reject("POSTGRES_URL", "want postgres://user@host:port/db?sslmode=...")
	}
	c.SetDefaults(name, httpAddr)
	return c
}

// maxConns reads a pool size from the variable name, def when unset.
func maxConns(e *config.Env, name string, def int32) int32 {
	n := e.Int(name, int(def))
	if n < 1 || n > 1000 {
		e.Reject(name, "want 1 to 1000 connections")
		return def
	}
	return int32(n)
}

// MaxConnsVar is the variable setting one service's pool size over
// POSTGRES_MAX_CONNS, e.g. PAYMENTS_POSTGRES_MAX_CONNS.
func MaxConnsVar(name string) string { return strings.ToUpper(name) + "_POSTGRES_MAX_CONNS" }

// PasswordVar is the variable holding a service's PostgreSQL password,
// e.g. PAYMENTS_POSTGRES_PASSWORD.
func PasswordVar(name string) string { return strings.ToUpper(name) + "_POSTGRES_PASSWORD" }

// AdminURLVar names the superuser's URL the bootstrap runs as
// (postgres.Bootstrap); unset, POSTGRES_URL's.
const AdminURLVar = "POSTGRES_ADMIN_URL"

// AdminURL is the bootstrap's URL from the environment: POSTGRES_ADMIN_URL,
// else POSTGRES_URL, else postgres.DefaultURL.
func AdminURL(e *config.Env) string {
	return e.String("POSTGRES_ADMIN_URL", e.String("POSTGRES_URL", postgres.DefaultURL)) // AdminURLVar, spelt out for deploy's test
}

// RoleName is the role the service connects as: Role, else its
// database's name.
func (c Config) RoleName() string {
	if c.Role != "" {
		return c.Role
	}
	return c.Database
}

// Owner is the database and role postgres.Bootstrap makes for the service.
func (c Config) Owner() postgres.Owner {
	return postgres.Owner{Database: c.Database, Role: c.RoleName(), Password: c.PostgresPassword}
}

// ApplicationName is what the service's connections call themselves in
// pg_stat_activity (its pool; its relay adds "-relay", database creation
// "-setup"), e.g. orderflow-payments.
func ApplicationName(name string) string { return "orderflow-" + name }

// AddrVar is the variable naming a service's listen address, e.g.
// PAYMENTS_HTTP_ADDR.
func AddrVar(name string) string { return strings.ToUpper(name) + "_HTTP_ADDR" }

// Validate reports the first bad field, named as its environment variable
// where it has one.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("service: empty name")
	case c.HTTPAddr == "":
		return fmt.Errorf("%s: empty listen address", AddrVar(c.Name))
	case c.Database == "":
		return fmt.Errorf("%s: empty database name", c.Name)
	case len(c.Brokers) == 0:
		return errors.New("KAFKA_BROKERS: no brokers")
	case c.OutboxRetention <= 0:
		return errors.New("OUTBOX_RETENTION: must be positive")
	case c.ShutdownTimeout < 0 || c.RetryBackoff < 0:
		return fmt.Errorf("%s: negative shutdown timeout or retry backoff", c.Name)
	}
	if u, err := url.Parse(c.PostgresURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return errors.New("POSTGRES_URL: want postgres://user@host:port/db?sslmode=...")
	}
	return nil
}

// LogValue masks the database password, so the config can be logged.
func (c Config) LogValue() slog.Value {
	pg := c.PostgresURL
	if u, err := url.Parse(pg); err == nil {
		pg = u.Redacted()
	}
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.String("postgres_url", pg),
		slog.String("database", c.Database),
		slog.String("role", c.RoleName()),
		slog.Int("postgres_max_conns", int(c.MaxConns)),
		slog.Any("brokers", c.Brokers),
		slog.Any("kafka", c.Kafka),
		slog.Any("http_auth", c.Auth),
		slog.Duration("outbox_retention", c.OutboxRetention),
		slog.String("otlp_endpoint", c.Telemetry.Endpoint),
	)
}

// Shared returns c itself. A service's Config embeds Config, so every
// service's *Config has this method: code that runs services side by side
// (the dev stack) reaches their shared settings through it.
func (c *Config) Shared() *Config { return c }
