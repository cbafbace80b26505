// Package postgres holds what every service needs to reach its own database:
// creating it when missing, connecting, and applying embedded migrations.
// It does not hide pgx: services use pgxpool and sqlc directly.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	pgxuuid "github.com/vgarvardt/pgx-google-uuid/v5"
	"go.opentelemetry.io/otel/trace"
)

// DefaultURL is the server used when POSTGRES_URL is unset.
const DefaultURL = "postgres://postgres@localhost:5432/postgres?sslmode=disable"

// WithApplicationName returns rawURL with application_name=name added,
// unless it names one already (the user's choice stands). PostgreSQL shows
// it in pg_stat_activity, so a count of connections says whose they are.
// A URL that does not parse is returned as it is, for its user to report.
func WithApplicationName(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	q := u.Query()
	if q.Get("application_name") != "" {
		return rawURL
	}
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// DatabaseURL returns serverURL with its database replaced by name.
func DatabaseURL(serverURL, name string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("parse postgres url: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// EnsureDatabase creates database name on the server at serverURL unless it
// exists, and returns its URL. Concurrent callers are safe.
func EnsureDatabase(ctx context.Context, serverURL, name string) (string, error) {
	dbURL, err := DatabaseURL(serverURL, name)
	if err != nil {
		return "", err
	}
	conn, err := connectSetup(ctx, serverURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return dbURL, nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") {
		return dbURL, nil // created by a concurrent caller
	}
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return dbURL, nil
}

// DropDatabase drops database name, disconnecting its sessions.
func DropDatabase(ctx context.Context, serverURL, name string) error {
	conn, err := connectSetup(ctx, serverURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

// connectSetup opens the short-lived connection that creates or drops a
// database, named as the server URL's application_name with "-setup", so a
// count of connections at start tells it from the pools.
func connectSetup(ctx context.Context, serverURL string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	if name := cfg.RuntimeParams["application_name"]; name != "" {
		cfg.RuntimeParams["application_name"] = name + "-setup"
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return conn, nil
}

// Connect opens a pool of at most maxConns connections (0: pgx's default,
// max(4, CPUs)) on the database at dbURL and checks it answers. The pool
// opens connections as they are needed (no MinConns) and never more than
// maxConns: beyond them, Acquire waits, for as long as its context allows.
// configure, e.g. Traced, adjusts the pool's config before it opens.
func Connect(ctx context.Context, dbURL string, maxConns int32, configure ...func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	// A statement pgx prepared is planned for the values at hand each
	// time, never once for all: the services' batch statements take arrays
	// of 1 to hundreds of keys, and a connection that settled on a generic
	// plan while its tables were young kept scanning them whole as they
	// grew (payments' GetPayments: a sequential scan per batch, 9 ms at
	// 17,000 rows, most of payments' database time at 1,000 orders/s).
	// Planning these statements costs microseconds. The URL may say
	// otherwise (plan_cache_mode=auto).
	if _, set := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !set {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	RegisterTypes(cfg)
	for _, c := range configure {
		c(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping postgres: %w", err)
	}
	return pool, nil
}

// RegisterTypes teaches cfg's connections the Go types the services pass
// as parameters. google/uuid's UUID otherwise goes through its
// driver.Valuer: formatted to a string, refused by the binary uuid codec
// (an error built and dropped), parsed back and only then encoded — about
// a tenth of the services' CPU in the choreography benchmark.
func RegisterTypes(cfg *pgxpool.Config) {
	next := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		pgxuuid.Register(conn.TypeMap())
		if next != nil {
			return next(ctx, conn)
		}
		return nil
	}
}

// Migrate applies the goose migrations in fsys (SQL files at its root) to
// the pool's database, recording them in versionTable. Instances starting
// together are serialized by a session advisory lock.
func Migrate(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, versionTable string) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID(versionTable)))
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(versionTable), goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// lockID gives each version table its own advisory lock, so a service's
// migrations and the outbox's do not wait on each other.
func lockID(table string) int64 {
	var h int64 = 5887940537704921958 // goose's default id, as a seed
	for _, c := range table {
		h = h*31 + int64(c)
	}
	return h
}

// Traced makes a pool's queries spans (otelpgx) of tp, children of the
// span in each query's context; a query without one (the relay's polls,
// housekeeping) makes none, so only the work of a traced request, record
// or timer shows. With tp nil it changes nothing.
func Traced(tp trace.TracerProvider) func(*pgxpool.Config) {
	return func(cfg *pgxpool.Config) {
		if tp != nil {
			cfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tp), otelpgx.WithDisableAcquireTracer())
		}
	}
}
