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
	name := randomName()
	url, err := postgres.EnsureDatabase(ctx, ServerURL(), name)
	if err != nil {
		t.Fatalf("pgtest: %v (is PostgreSQL running? see README)", err)
	}
	t.Cleanup(func() {
		// And the role of that name, should a bootstrap have made one (a
		// dev stack under test makes one per service database).
		if err := postgres.DropOwner(context.Background(), ServerURL(), postgres.Owner{Database: name, Role: name}); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	return url
}

// NewOwner bootstraps a database for t owned by a role of its own, both
// named orderflow_test_<random> (postgres.Bootstrap: what a service runs
// as), and drops both when t ends.
func NewOwner(t testing.TB) postgres.Owner {
	t.Helper()
	name := randomName()
	o := postgres.Owner{Database: name, Role: name}
	if err := postgres.Bootstrap(context.Background(), ServerURL(), o); err != nil {
		t.Fatalf("pgtest: %v (is PostgreSQL running? see README)", err)
	}
	t.Cleanup(func() {
		if err := postgres.DropOwner(context.Background(), ServerURL(), o); err != nil {
			t.Logf("pgtest: drop %s: %v", o.Database, err)
		}
	})
	return o
}

// OwnerURL is the URL of o's database as its role.
func OwnerURL(t testing.TB, o postgres.Owner) string {
	t.Helper()
	u, err := postgres.AsRole(ServerURL(), o.Database, o.Role, o.Password)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func randomName() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "orderflow_test_" + hex.EncodeToString(b)
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
