// Package devstack runs the whole system in one process for `make run`: the
// embedded Kafka broker when KAFKA_BROKERS is unset, the topics, and every
// service's Run side by side. A service failing stops the others.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
	"github.com/orderflow/orderflow/services/email"
	"github.com/orderflow/orderflow/services/loyalty"
	"github.com/orderflow/orderflow/services/orders"
	"github.com/orderflow/orderflow/services/payments"
	"github.com/orderflow/orderflow/services/warehouse"
)

// EmbeddedAddr is where the embedded broker listens, as docs/design.md says.
const EmbeddedAddr = "127.0.0.1:9092"

// DataDir holds the embedded broker's data and, when SMTP_ADDR is unset, the
// emails appended to mail/orderflow.mbox.
const DataDir = ".data"

// Options adjust the stack; the zero value is what `make run` runs.
type Options struct {
	KafkaAddr string // the embedded broker's address; default EmbeddedAddr
	DataDir   string // default DataDir
	// Configure adjusts each service's shared settings after the
	// environment's, e.g. to move its port or database in tests.
	Configure func(service string, c *service.Config)
	Logs      io.Writer // default os.Stderr
	// QueuePrefix goes before the email service's RabbitMQ exchange and
	// queue names, so tests do not share them with `make run`.
	QueuePrefix string
}

// unit is one service of the stack, configured from the environment.
type unit struct {
	name string
	// prepare reads the service's config; shared points into it, so what
	// the stack sets there later (the brokers) is what the service runs with.
	prepare func(configure func(*service.Config), opts Options) (run func(context.Context, *slog.Logger) error, shared *service.Config, err error)
}

// newUnit adapts a service's ConfigFromEnv and Run to a unit.
func newUnit[C any, P interface {
	*C
	Shared() *service.Config
}](name string, fromEnv func() (C, error), run func(context.Context, C, *slog.Logger) error, adjust ...func(*C, Options)) unit {
	return unit{name: name, prepare: func(configure func(*service.Config), opts Options) (func(context.Context, *slog.Logger) error, *service.Config, error) {
		cfg, err := fromEnv()
		if err != nil {
			return nil, nil, err
		}
		for _, a := range adjust {
			a(&cfg, opts)
		}
		shared := P(&cfg).Shared()
		// One process, five services: each traces under its own name,
		// whatever OTEL_SERVICE_NAME says.
		shared.Telemetry.ServiceName = ""
		if configure != nil {
			configure(shared)
		}
		return func(ctx context.Context, log *slog.Logger) error { return run(ctx, cfg, log) }, shared, nil
	}}
}

// units are the services `make run` runs, in the order the banner lists
// them.
var units = []unit{
	newUnit("orders", orders.ConfigFromEnv, orders.Run),
	newUnit("payments", payments.ConfigFromEnv, payments.Run),
	newUnit("warehouse", warehouse.ConfigFromEnv, warehouse.Run),
	newUnit("loyalty", loyalty.ConfigFromEnv, loyalty.Run),
	newUnit("email", email.ConfigFromEnv, email.Run, func(c *email.Config, o Options) {
		c.MailDir = filepath.Join(o.DataDir, "mail") // mail/orderflow.mbox, when SMTP_ADDR is unset
		// Without one, EMAIL_QUEUE_PREFIX's, as the service read it.
		if o.QueuePrefix != "" {
			c.QueuePrefix = o.QueuePrefix
		}
	}),
	// orderflowctl new service adds its service above this line.
}

// Services names the services the stack runs.
func Services() []string {
	names := make([]string, len(units))
	for i, u := range units {
		names[i] = u.name
	}
	return names
}

// Run starts the stack and blocks until ctx is done, then stops every
// service and the broker; nothing accepted is lost (unpublished outbox rows
// wait in PostgreSQL for the next start).
func Run(ctx context.Context, out io.Writer, opts Options) error {
	if opts.KafkaAddr == "" {
		opts.KafkaAddr = EmbeddedAddr
	}
	if opts.DataDir == "" {
		opts.DataDir = DataDir
	}
	if opts.Logs == nil {
		opts.Logs = os.Stderr
	}
	env := config.FromEnv()
	level := env.LogLevel("LOG_LEVEL", "info")
	format := env.OneOf("LOG_FORMAT", "json", "json", "text")
	brokers := kafka.ParseBrokers(env.String("KAFKA_BROKERS", ""))
	adminURL := service.AdminURL(env)
	admin := kafka.SecurityFromEnv(env, "") // topic creation; the embedded broker's superuser
	if err := env.Err(); err != nil {
		return err
	}
	logger := func(service string) *slog.Logger { return config.NewLogger(opts.Logs, service, level, format) }
	log := logger("devstack")

	type prepared struct {
		name string
		cfg  *service.Config
		run  func(context.Context, *slog.Logger) error
	}
	var stack []prepared
	for _, u := range units {
		configure := func(c *service.Config) {
			if opts.Configure != nil {
				opts.Configure(u.name, c)
			}
		}
		run, cfg, err := u.prepare(configure, opts)
		if err != nil {
			return err
		}
		stack = append(stack, prepared{u.name, cfg, run})
	}

	if len(brokers) == 0 {
		// With KAFKA_SASL_MECHANISM set, the embedded broker authenticates
		// every client and holds each service's user to its ACLs
		// (kafka.Access): the users and passwords the services were
		// configured with, and the admin as its superuser.
		sec := kafka.EmbeddedSecurity{Admin: admin, TLS: nil}
		passwords := map[string]string{}
		for _, p := range stack {
			if p.cfg.Kafka.Mechanism != "" {
				sec.Users = append(sec.Users, registry.Get(p.name).Access(p.cfg.Kafka.User))
				passwords[p.cfg.Kafka.User] = p.cfg.Kafka.Password
			}
		}
		sec.Password = func(user string) string { return passwords[user] }
		if admin.TLS != nil {
			// KAFKA_TLS=on: the broker serves a certificate made now, which
			// the stack's clients trust, and tools find in kafka-ca.pem.
			server, certPEM, roots, err := kafka.SelfSigned()
			if err != nil {
				return err
			}
			caFile := filepath.Join(opts.DataDir, "kafka-ca.pem")
			if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(caFile, certPEM, 0o644); err != nil {
				return fmt.Errorf("write the embedded broker's certificate: %w", err)
			}
			sec.TLS = server
			admin.TLS = admin.TLS.Clone()
			admin.TLS.RootCAs = roots
			for _, p := range stack {
				if p.cfg.Kafka.TLS != nil {
					p.cfg.Kafka.TLS = p.cfg.Kafka.TLS.Clone()
					p.cfg.Kafka.TLS.RootCAs = roots
				}
			}
			log.Info("embedded kafka broker speaks TLS; tools trust its certificate with KAFKA_TLS_CA_FILE", "ca_file", caFile)
		}
		dir := filepath.Join(opts.DataDir, "kafka")
		b, err := kafka.StartEmbedded(opts.KafkaAddr, dir, sec)
		if err != nil {
			return fmt.Errorf("%w (is another `make run` or a Kafka on %s running? set KAFKA_BROKERS to use it)", err, opts.KafkaAddr)
		}
		defer b.Close() // after the services stopped: persists its state
		brokers = b.Addrs()
		log.Info("embedded kafka broker started", "addr", brokers[0], "data", dir, "security", admin)
	}
	for _, p := range stack {
		p.cfg.Brokers = brokers
	}

	// Each service runs as a role owning its database and nothing else;
	// the superuser makes them first (what `orderflowctl db bootstrap`
	// does for a stack started otherwise).
	for _, p := range stack {
		if err := postgres.Bootstrap(ctx, adminURL, p.cfg.Owner()); err != nil {
			return fmt.Errorf("%s: %w (is PostgreSQL up? %s names the superuser that makes the services' roles; default POSTGRES_URL's)", p.name, err, service.AdminURLVar)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	// Not a precondition: with the broker down, the services still start,
	// and their relays and consumers catch up once the broker and its
	// topics are there.
	g.Go(func() error { kafka.EnsureTopicsRetrying(gctx, brokers, admin, log, registry.Topics()...); return nil })
	var listening [][2]string // service, address
	conns, keyHeader := 0, ""
	for _, p := range stack {
		listening = append(listening, [2]string{p.name, p.cfg.HTTPAddr})
		conns += connections(*p.cfg)
		if p.name == "orders" && p.cfg.Auth.Enabled() {
			// The shape of a credential, never one of them.
			keyHeader = " -H 'X-API-Key: <one of HTTP_API_KEYS>'"
		}
		g.Go(func() error { return p.run(gctx, logger(p.name)) })
	}

	printBanner(out, listening, brokers, conns, keyHeader)
	err := g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped", "at", time.Now().Format(time.RFC3339))
	return nil
}

// connections is the most PostgreSQL connections a service configured by
// c holds at once: its pool, its consumer's when it consumes, and its
// relay's. Its database's creation at start is one more, closed before
// the pool opens.
func connections(c service.Config) int {
	n := int(c.MaxConns) + outbox.Connections
	if len(registry.Get(c.Name).Consumes) > 0 {
		n += consumer.DefaultTransactions
	}
	return n
}

// printBanner says where each service listens, how many PostgreSQL
// connections the stack may hold, and how to place an order (with
// keyHeader, the credential the orders API asks for, when it asks).
func printBanner(out io.Writer, listening [][2]string, brokers []string, conns int, keyHeader string) {
	var b strings.Builder
	b.WriteString("\nOrderflow is running (Ctrl-C stops it).\n")
	bases := map[string]string{}
	for _, l := range listening {
		base := baseURL(l[1])
		bases[l[0]] = base
		fmt.Fprintf(&b, "  %-9s http://%s   (GET /healthz /readyz /metrics)\n", l[0], base)
	}
	fmt.Fprintf(&b, "  %-9s %v\n", "kafka", brokers)
	fmt.Fprintf(&b, "  %-9s at most %d connections (POSTGRES_MAX_CONNS or <SERVICE>_POSTGRES_MAX_CONNS per pool, +%d per consumer, +%d per relay)\n",
		"postgres", conns, consumer.DefaultTransactions, outbox.Connections)
	fmt.Fprintf(&b, `
Place an order:
  curl -si %[1]s/orders -H 'Content-Type: application/json'%[3]s -d '{"customerId":"c-42","email":"ada@example.com","items":[{"sku":"book-1","quantity":2,"unitPriceCents":1250}],"currency":"EUR","paymentToken":"tok_visa"}'
Then follow it:
  curl -s %[1]s/orders/<id>
and its emails (sent to SMTP_ADDR, or appended to .data/mail/orderflow.mbox):
  curl -s %[2]s/emails?orderId=<id>

`, bases["orders"], bases["email"], keyHeader)
	_, _ = io.WriteString(out, b.String())
}

// baseURL is host:port for a listen address, with localhost for an
// unspecified host.
func baseURL(addr string) string {
	if host, port, err := net.SplitHostPort(addr); err == nil && host != "" && host != "0.0.0.0" && host != "::" {
		return net.JoinHostPort(host, port)
	}
	return "localhost" + addr
}
