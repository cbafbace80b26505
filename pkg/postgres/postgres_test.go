package postgres_test

import (
	"context"
	"testing"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// A service pool plans each execution for its values (see Connect), unless
// its URL chooses otherwise.
func TestConnectPlansEachExecution(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	for _, c := range []struct{ url, want string }{
		{dbURL, "force_custom_plan"},
		{postgres.WithApplicationName(dbURL, "x") + "&plan_cache_mode=auto", "auto"},
	} {
		pool, err := postgres.Connect(context.Background(), c.url, 1)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		if err := pool.QueryRow(context.Background(), "SHOW plan_cache_mode").Scan(&got); err != nil || got != c.want {
			t.Errorf("%s: plan_cache_mode %q (%v), want %q", c.url, got, err, c.want)
		}
		pool.Close()
	}
}

func TestWithApplicationName(t *testing.T) {
	const base = "postgres://postgres@localhost:5432/db?sslmode=disable"
	if got := postgres.WithApplicationName(base, "orderflow-orders"); got != base+"&application_name=orderflow-orders" &&
		got != "postgres://postgres@localhost:5432/db?application_name=orderflow-orders&sslmode=disable" {
		t.Errorf("added: %s", got)
	}
	mine := base + "&application_name=mine"
	if got := postgres.WithApplicationName(mine, "orderflow-orders"); got != mine {
		t.Errorf("the user's name replaced: %s", got)
	}
}
