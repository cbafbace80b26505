// Package pgtest gives each test its own PostgreSQL database on the server
// named by POSTGRES_URL (default: the local trust-auth server), so tests run
// in parallel and leave nothing behind.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/postgres"
)

// ServerURL is the server tests create their databases on.
func ServerURL() string {
	if u := os.Getenv("POSTGRES_URL"); u != "" {
		return u
	}
	return postgres.DefaultURL
}

// NewDatabase creates an empty database for t and drops it when t ends. It
// returns the database's URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "orderflow_test_" + hex.EncodeToString(b)
	url, err := postgres.EnsureDatabase(ctx, ServerURL(), name)
	if err != nil {
		t.Fatalf("pgtest: %v (is PostgreSQL running? see README)", err)
	}
	t.Cleanup(func() {
		if err := postgres.DropDatabase(context.Background(), ServerURL(), name); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	return url
}

// NewPool creates a database for t and returns a small pool on it, closed
// when t ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := NewDatabase(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 8
	postgres.RegisterTypes(cfg)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
