// Package email is the email service. Its notifier consumes the orders,
// payments and warehouse topics and turns PaymentCaptured (the order
// confirmation), PaymentFailed, OrderShipped (with the tracking number) and
// PaymentRefunded into SendEmail tasks, each written to the service's
// outbox in the transaction of the event's inbox row. The outbox relay
// publishes them to RabbitMQ (exchange "email", queue "email.send"; see
// package rabbit for the retry and dead-letter queues) with publisher
// confirms, and the queue worker sends each over SMTP (SMTP_ADDR), or, when
// that is unset, appends it to the mbox file .data/mail/orderflow.mbox.
//
// Guarantees: one task per event; a task is acked only after its email was
// accepted by the SMTP server and recorded as sent, or after it was parked
// in email.send.dead; a task delivered again after it was recorded sent is
// not sent again. The window left: a crash after the SMTP server accepted
// the message and before the sent record committed sends it again, with
// the same Message-ID (derived from the task id), which lets mail clients
// and many servers drop the repeat.
package email

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/rabbit"
	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/pkg/service"
)

const serviceName = "email"

//go:embed migrations/*.sql
var migrations embed.FS

// Config configures the service: the shared settings and the email ones.
// Zero fields take the defaults of ConfigFromEnv.
type Config struct {
	service.Config
	AMQPURL     string          // RabbitMQ; default amqp://guest:guest@localhost:5672/
	SMTPAddr    string          // host:port of the SMTP server; empty appends to MailDir/orderflow.mbox
	MailDir     string          // where the mbox is; default .data/mail
	From        string          // the From header; default "Orderflow <orders@orderflow.local>"
	MaxAttempts int             // sends per task before it is parked; default 5
	Prefetch    int             // unacked messages per worker, handled concurrently; default 100
	RetryDelays []time.Duration // waits before each retry; default 5s, 30s, 2m, 10m
	// QueuePrefix is put before every exchange and queue name, so tests
	// and side-by-side stacks can share a broker; empty in production.
	QueuePrefix string

	// afterDeliver, a test hook, runs after a task's handling succeeded
	// and before its ack.
	afterDeliver func(conn *rabbit.Conn)
	// claimStale, for tests, replaces defaultClaimStale.
	claimStale time.Duration
}

// Defaults.
const (
	DefaultHTTPAddr    = ":8084"
	DefaultAMQPURL     = "amqp://guest:guest@localhost:5672/"
	DefaultMailDir     = ".data/mail"
	DefaultFrom        = "Orderflow <orders@orderflow.local>"
	DefaultMaxAttempts = 5
	// DefaultPrefetch is high because a message's handling is mostly
	// waiting: two commits (its claim and its sent record, each shared
	// with the messages in hand then) and the broker's round trip after
	// its ack. The worker's rate is about the messages in hand over that
	// latency, and more in hand also make each commit carry more of
	// them: BenchmarkEmailThroughput on a shared 2-core machine went
	// from 2,400-2,700/s at 20 to 3,600-4,400/s at 100, each email
	// costing a third less CPU. The SMTP server sees no more than
	// smtpConnections of them at once.
	DefaultPrefetch = 100
)

// smtpConnections bounds the SMTP connections of a worker (the sends in
// progress; the other messages in hand wait for one): the prefetch is
// sized for the database's and the broker's latency, not the SMTP
// server's limits (Postfix takes 50 connections per client by default).
const smtpConnections = 20

// DefaultRetryDelays are the waits before the retries of a failed send.
var DefaultRetryDelays = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}

func (c *Config) setDefaults() {
	c.SetDefaults(serviceName, DefaultHTTPAddr)
	if c.AMQPURL == "" {
		c.AMQPURL = DefaultAMQPURL
	}
	if c.MailDir == "" {
		c.MailDir = DefaultMailDir
	}
	if c.From == "" {
		c.From = DefaultFrom
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Prefetch == 0 {
		c.Prefetch = DefaultPrefetch
	}
	if len(c.RetryDelays) == 0 {
		c.RetryDelays = DefaultRetryDelays
	}
}

// ConfigFromEnv reads the shared variables (service.FromEnv; the listen
// address from EMAIL_HTTP_ADDR, default ":8084") and AMQP_URL, SMTP_ADDR,
// EMAIL_MAX_ATTEMPTS, EMAIL_PREFETCH, EMAIL_RETRY_DELAYS (comma-separated
// Go durations), EMAIL_FROM and EMAIL_QUEUE_PREFIX (before every exchange
// and queue name; default none). The error is one line naming each bad
// variable.
func ConfigFromEnv() (Config, error) {
	e := config.FromEnv()
	cfg := Config{Config: service.FromEnv(e, serviceName, DefaultHTTPAddr)}
	cfg.AMQPURL = e.String("AMQP_URL", DefaultAMQPURL)
	cfg.SMTPAddr = e.String("SMTP_ADDR", "")
	cfg.From = e.String("EMAIL_FROM", DefaultFrom)
	cfg.MaxAttempts = e.Int("EMAIL_MAX_ATTEMPTS", DefaultMaxAttempts)
	cfg.Prefetch = e.Int("EMAIL_PREFETCH", DefaultPrefetch)
	cfg.QueuePrefix = e.String("EMAIL_QUEUE_PREFIX", "")
	if s := e.String("EMAIL_RETRY_DELAYS", ""); s != "" {
		for _, part := range strings.Split(s, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(part))
			if err != nil || d <= 0 {
				e.Reject("EMAIL_RETRY_DELAYS", fmt.Sprintf("%q is not a positive duration (e.g. 5s,30s,2m)", part))
				break
			}
			cfg.RetryDelays = append(cfg.RetryDelays, d)
		}
	}
	if err := e.Err(); err != nil {
		return Config{}, err
	}
	cfg.setDefaults()
	return cfg, cfg.Validate()
}

// Validate reports the first bad field, named as its environment variable.
func (c Config) Validate() error {
	switch {
	case c.MaxAttempts < 1:
		return errors.New("EMAIL_MAX_ATTEMPTS: must be at least 1")
	case c.Prefetch < 1:
		return errors.New("EMAIL_PREFETCH: must be at least 1")
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return fmt.Errorf("EMAIL_FROM: %q is not an address: %v", c.From, err)
	}
	for _, d := range c.RetryDelays {
		if d < time.Millisecond {
			return errors.New("EMAIL_RETRY_DELAYS: every delay must be at least 1ms")
		}
	}
	return c.Config.Validate()
}

// Topology is the RabbitMQ topology cfg declares.
func (c Config) Topology() rabbit.Topology {
	return rabbit.EmailTopology(c.RetryDelays).WithPrefix(c.QueuePrefix)
}

// Migrate creates or updates the service's tables, outbox and inbox.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return service.Migrate(ctx, pool, serviceName, service.Sub(migrations, "migrations"))
}

// Run runs the service until ctx is done (see service.Run): the notifier
// consuming orders, payments and warehouse, the relay publishing tasks to
// RabbitMQ, the queue worker sending them, and GET /emails.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	topo := cfg.Topology()
	conn, err := rabbit.Dial(cfg.AMQPURL, cfg.QueuePrefix+"orderflow-email", topo, log)
	if err != nil {
		return fmt.Errorf("AMQP_URL: %w", err)
	}
	defer conn.Close()
	pub := rabbit.NewPublisher(conn)
	defer pub.Close() // before conn.Close: ends the publisher's return watch
	log.Info("email settings", "smtp_addr", cfg.SMTPAddr, "mail_dir", cfg.MailDir, "max_attempts", cfg.MaxAttempts,
		"prefetch", cfg.Prefetch, "retry_delays", fmt.Sprint(cfg.RetryDelays), "queue", topo.Queue)
	var m mailer
	if cfg.SMTPAddr != "" {
		// A send in progress at shutdown gets half the shutdown timeout to
		// end; the rest leaves room for its sent record and its ack.
		sm := newSMTPMailer(cfg.SMTPAddr, min(cfg.Prefetch, smtpConnections), cfg.ShutdownTimeout/2)
		defer sm.close()
		m = sm
	} else {
		mb, err := openMbox(cfg.MailDir)
		if err != nil {
			return fmt.Errorf("SMTP_ADDR unset, so mail goes to %s: %w", filepath.Join(cfg.MailDir, mboxName), err)
		}
		defer mb.close()
		m = mb
	}
	return service.Run(ctx, cfg.Config, service.Spec{
		Migrations: service.Sub(migrations, "migrations"),
		Topics:     registry.Get(serviceName).Consumes,
		Emits:      registry.Get(serviceName).Emits,
		Events:     decoder.Events(),
		Publisher:  pub,
		Setup: func(d service.Deps) (service.Parts, error) {
			n := &notifier{outbox: d.Outbox, exchange: topo.Exchange, log: d.Log}
			from, _ := mail.ParseAddress(cfg.From) // checked by Validate
			stale := cfg.claimStale
			if stale == 0 {
				stale = defaultClaimStale
			}
			ledger := newLedger(d.Pool, stale)
			pub.SetTracing(d.Tracing) // before the relay starts
			dl := &deliverer{pool: d.Pool, ledger: ledger, mailer: m, from: cfg.From, sender: from.Address, log: d.Log}
			if d.Tracing != nil {
				dl.tracer = d.Tracing.Tracer("github.com/orderflow/orderflow/services/email")
			}
			handle := dl.handle
			if cfg.afterDeliver != nil {
				handle = func(ctx context.Context, d *rabbit.Delivery) error {
					err := dl.handle(ctx, d)
					if err == nil {
						cfg.afterDeliver(conn)
					}
					return err
				}
			}
			w, err := rabbit.NewWorker(rabbit.WorkerConfig{
				Conn: conn, Handler: handle, Failed: dl.failed,
				Prefetch: cfg.Prefetch, MaxAttempts: cfg.MaxAttempts, Registerer: d.Registry, Tracing: d.Tracing,
			}, d.Log)
			if err != nil {
				return service.Parts{}, err
			}
			d.Registry.MustRegister(newQueueMetrics(conn, d.Pool))
			api := &api{pool: d.Pool, log: d.Log}
			return service.Parts{
				Batch:  n.handle,
				Routes: api.routes,
				Workers: []func(context.Context) error{func(ctx context.Context) error {
					// The ledger outlives the worker: a message in hand
					// when the worker stops still gets its sent record.
					bctx, stop := context.WithCancel(context.WithoutCancel(ctx))
					go ledger.run(bctx)
					defer func() { stop(); <-ledger.stopped }()
					return w.Run(ctx)
				}},
				Checks: []httpserver.Check{{Name: "rabbitmq", Func: conn.Ready}, {Name: "email-worker", Func: w.Ready}},
			}, nil
		},
	}, log)
}
