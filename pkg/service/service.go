// Package service runs the parts every Orderflow service shares, so that a
// service's own package holds only its business: its database (created if
// missing, then migrated: the service's tables, its outbox, inbox and
// timers), the outbox relay, the consumer group, the durable-timer worker,
// and the HTTP server with /healthz,
// /readyz, /metrics, correlation ids and request metrics. Main turns a
// service into a command.
package service

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/inbox"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/timer"
	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/telemetry"
)

// Spec is what a service adds to the shared parts.
type Spec struct {
	// Migrations holds the service's goose migrations at its root; their
	// version table is "goose_<name>".
	Migrations fs.FS
	// Topics are the topics the service consumes; none runs no consumer.
	Topics []string
	// Emits are the Kafka topics its outbox writes to. Run keeps these,
	// Topics and, for a consumer, dlq.<name> present (kafka.Keeper):
	// created when missing, and /readyz fails while one is. With neither
	// Emits nor a Publisher the service runs no relay.
	Emits []string
	// Events names the events of those topics the service's Handler
	// handles; the consumer passes over the others without a transaction
	// (consumer.Config.Events). Nil hands every event to the Handler.
	Events []string
	// Publisher, when set, relays the service's outbox instead of Kafka
	// (outbox.Config.Publisher): email's tasks go to RabbitMQ.
	Publisher outbox.Publisher
	// Setup builds the service's parts once its database is migrated.
	Setup func(Deps) (Parts, error)
}

// Deps are the shared parts a service's Setup builds on.
type Deps struct {
	Pool     *pgxpool.Pool
	Outbox   *outbox.Outbox
	Registry *prometheus.Registry
	Log      *slog.Logger
	Tracing  trace.TracerProvider // nil when tracing is off
}

// Parts are a service's own parts.
type Parts struct {
	// Handler applies consumed events one by one; Batch applies a whole
	// batch with set-based statements (consumer.BatchHandler) and takes
	// precedence. One is required when Spec.Topics is set.
	Handler consumer.Handler
	Batch   consumer.BatchHandler
	// Dispatch handles each event by its type, each named once
	// (consumer.On); the consumer then passes over every other event.
	// Handler and Batch take precedence.
	Dispatch *consumer.Dispatch
	// Routes adds the service's endpoints beside /healthz, /readyz and
	// /metrics.
	Routes func(chi.Router)
	// Timers holds the FireFunc of each durable-timer kind the service
	// schedules (package timer); with any, a timer worker runs.
	Timers map[string]timer.FireFunc
	// BatchTimers holds the BatchFireFunc of kinds fired a batch at a time
	// (timer.Config.FireBatch).
	BatchTimers map[string]timer.BatchFireFunc
	// Workers run beside the consumer until ctx is done (email's queue
	// worker); an error from one stops the service.
	Workers []func(ctx context.Context) error
	// Checks are added to /readyz.
	Checks []httpserver.Check
}

// kafkaTopics are the topics the service needs: those it consumes, its
// dead-letter topic when it consumes any, and those it emits to.
func (s Spec) kafkaTopics(name string) []string {
	topics := slices.Concat(s.Topics, s.Emits)
	if len(s.Topics) > 0 {
		topics = append(topics, consumer.DLQTopic(name))
	}
	return topics
}

// Sub returns the subtree dir of an embedded migrations directory, for
// Spec.Migrations; it panics when dir is not there, which is a build
// mistake, not a runtime condition.
func Sub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Migrate creates or updates the service's tables, its outbox, its inbox
// and its timers in the pool's database.
func Migrate(ctx context.Context, pool *pgxpool.Pool, name string, migrations fs.FS) error {
	if migrations != nil {
		if err := postgres.Migrate(ctx, pool, migrations, "goose_"+name); err != nil {
			return fmt.Errorf("%s migrations: %w", name, err)
		}
	}
	if err := outbox.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("outbox migrations: %w", err)
	}
	if err := inbox.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("inbox migrations: %w", err)
	}
	if err := timer.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("timer migrations: %w", err)
	}
	return nil
}

// Run runs the service until ctx is done: it connects to its database as
// its role and migrates it, then relays its outbox, consumes its topics
// and serves HTTP. Stopped while still starting, it returns nil too.
// After ctx is done it gives in-flight requests cfg.ShutdownTimeout to
// finish, lets each partition finish the record in hand, and returns once
// every goroutine it started has ended; nil after a clean shutdown.
func Run(ctx context.Context, cfg Config, spec Spec, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log.Info("starting", "config", cfg)
	err := run(ctx, cfg, spec, log)
	if err != nil && ctx.Err() != nil && startInterrupted(err) {
		// Stopped while still starting (a migration's connection closed
		// under it): a clean stop, not a failure.
		log.Info("stopped while starting", "err", err)
		return nil
	}
	return err
}

// startInterrupted reports whether err is what a start cut short by
// shutdown leaves: a context error or a connection closed under a query.
// (goose reports database/sql's errors as text, so those are matched so.)
func startInterrupted(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, driver.ErrBadConn.Error()) || strings.Contains(msg, sql.ErrConnDone.Error()) ||
		strings.Contains(msg, context.Canceled.Error())
}

func run(ctx context.Context, cfg Config, spec Spec, log *slog.Logger) error {

	tracing := telemetry.WithProvider(cfg.TracerProvider)
	if tracing == nil {
		var err error
		if tracing, err = telemetry.Start(ctx, cfg.Name, cfg.Telemetry); err != nil {
			return err
		}
		defer func() {
			// The last spans leave within the shutdown's time.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := tracing.Shutdown(sctx); err != nil {
				log.Warn("tracing shutdown", "err", err)
			}
		}()
	}
	tp := tracing.TracerProvider() // nil: off
	if tp != nil {
		log.Info("tracing on", "otlp_endpoint", cfg.Telemetry.Endpoint)
	}

	pool, err := connect(ctx, cfg, tp)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := Migrate(ctx, pool, cfg.Name, spec.Migrations); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ob := outbox.New(pool, outbox.Config{
		Service:    cfg.Name,
		Brokers:    cfg.Brokers,
		Publisher:  spec.Publisher,
		Retention:  cfg.OutboxRetention,
		Registerer: reg,
		Tracing:    tp,
		LogSteps:   !cfg.QuietSteps,
		Kafka:      cfg.Kafka,
	}, log)
	parts, err := spec.Setup(Deps{Pool: pool, Outbox: ob, Registry: reg, Log: log, Tracing: tp})
	if err != nil {
		return err
	}

	events := spec.Events
	if parts.Dispatch != nil && parts.Handler == nil && parts.Batch == nil {
		parts.Handler = parts.Dispatch.Handler()
		if events == nil {
			events = parts.Dispatch.Events()
		}
	}
	if len(spec.Topics) > 0 && parts.Handler == nil && parts.Batch == nil {
		return errors.New(cfg.Name + ": consumes topics but has no handler")
	}

	// Built before anything runs, so a bad part fails the start cleanly.
	var tw *timer.Worker
	if len(parts.Timers)+len(parts.BatchTimers) > 0 {
		tw, err = timer.New(timer.Config{
			Service:     cfg.Name,
			Pool:        pool,
			Fire:        parts.Timers,
			FireBatch:   parts.BatchTimers,
			AfterCommit: ob.Committed,
			Registerer:  reg,
		}, log)
		if err != nil {
			return err
		}
		// No Kick after each consumer commit: a service's timers of one
		// kind share one delay, so a new timer is due after every pending
		// one and the worker, sleeping until the earliest, needs no
		// wake-up; into an empty queue it is found within the worker's
		// MaxPoll (1 s). Kicking per commit cost a timer pass per
		// transaction (see README "Benchmarks").
	}
	keeper := kafka.NewKeeper(cfg.Brokers, spec.kafkaTopics(cfg.Name), 0, log.With("component", "topics"), cfg.Kafka.Opts()...)
	// A service that emits nothing runs no relay (and holds no lease).
	relays := len(spec.Emits) > 0 || spec.Publisher != nil
	checks := []httpserver.Check{
		{Name: "postgres", Func: pool.Ping},
		{Name: "topics", Func: keeper.Ready},
	}
	if relays {
		checks = append(checks, httpserver.Check{Name: "relay", Func: ob.Ready})
	}
	if tw != nil {
		checks = append(checks, httpserver.Check{Name: "timers", Func: tw.Ready})
	}
	checks = append(checks, parts.Checks...)
	var runner *consumer.Runner
	if len(spec.Topics) > 0 {
		runner, err = consumer.New(consumer.Config{
			Service:     cfg.Name,
			Brokers:     cfg.Brokers,
			Topics:      spec.Topics,
			Handler:     parts.Handler,
			Batch:       parts.Batch,
			Events:      events,
			Pool:        pool,
			BaseBackoff: cfg.RetryBackoff,
			AfterCommit: ob.Committed,
			Registerer:  reg,
			Tracing:     tp,
			Kafka:       cfg.Kafka,
		}, log)
		if err != nil {
			return err
		}
		checks = append(checks, httpserver.Check{Name: "consumer", Func: runner.Ready})
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return keeper.Run(gctx) })
	if relays {
		g.Go(func() error {
			if err := ob.Run(gctx); err != nil && gctx.Err() == nil {
				return fmt.Errorf("outbox relay: %w", err)
			}
			return nil
		})
	}
	if tw != nil {
		g.Go(func() error {
			if err := tw.Run(gctx); err != nil && gctx.Err() == nil {
				return fmt.Errorf("timer worker: %w", err)
			}
			return nil
		})
	}
	if runner != nil {
		g.Go(func() error {
			if err := runner.Run(gctx); err != nil && gctx.Err() == nil {
				return fmt.Errorf("consumer: %w", err)
			}
			return nil
		})
	}

	for _, w := range parts.Workers {
		g.Go(func() error {
			if err := w(gctx); err != nil && gctx.Err() == nil {
				return fmt.Errorf("worker: %w", err)
			}
			return nil
		})
	}

	r := httpserver.NewRouter(reg, checks...)
	if parts.Routes != nil {
		parts.Routes(r)
	}
	// Around the whole router: /healthz and /readyz stay open, /metrics
	// follows HTTP_AUTH_METRICS, and every route of the service is covered.
	handler := cfg.Auth.WithLog(log.With("component", "auth")).Middleware(r)
	g.Go(func() error {
		err := httpserver.Serve(gctx, cfg.HTTPAddr, httpserver.Traced(handler, tp, cfg.Name), log, httpserver.WithShutdownTimeout(cfg.ShutdownTimeout))
		if err != nil {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// connect opens the service's pool on its database as its role, and
// refuses a superuser: a service must not be able to reach any other
// service's data.
func connect(ctx context.Context, cfg Config, tp trace.TracerProvider) (*pgxpool.Pool, error) {
	dbURL, err := postgres.AsRole(cfg.PostgresURL, cfg.Database, cfg.RoleName(), cfg.PostgresPassword)
	if err != nil {
		return nil, err
	}
	pool, err := postgres.Connect(ctx, dbURL, cfg.MaxConns, postgres.Traced(tp))
	if err != nil {
		return nil, fmt.Errorf("%w (%s connects to its database %s as role %s: create both with `orderflowctl db bootstrap` as a superuser, which make run does; the password is %s)",
			err, cfg.Name, cfg.Database, cfg.RoleName(), PasswordVar(cfg.Name))
	}
	var super bool
	if err := pool.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		pool.Close()
		return nil, fmt.Errorf("look up role %s: %w", cfg.RoleName(), err)
	}
	if super {
		pool.Close()
		return nil, fmt.Errorf("%s: role %s is a superuser; a service runs as a role that owns its database and nothing else (orderflowctl db bootstrap makes one)", cfg.Name, cfg.RoleName())
	}
	return pool, nil
}
