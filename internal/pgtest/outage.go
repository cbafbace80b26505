package pgtest

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Outage makes the database at dbURL unreachable, as a PostgreSQL restart
// or fail-over does for its clients: new connections are refused
// (ALLOW_CONNECTIONS false) and every open one is terminated (SQLSTATE
// 57P01). The returned function ends the outage; it is also called when t
// ends, so a failing test leaves the database usable for its cleanup.
func Outage(t testing.TB, dbURL string) (end func()) {
	t.Helper()
	name := DatabaseName(t, dbURL)
	exec := func(sql string, args ...any) {
		t.Helper()
		conn, err := pgx.Connect(context.Background(), ServerURL())
		if err != nil {
			t.Fatalf("pgtest: outage: %v", err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
			t.Fatalf("pgtest: outage: %s: %v", sql, err)
		}
	}
	allow := "ALTER DATABASE " + pgx.Identifier{name}.Sanitize() + " ALLOW_CONNECTIONS "
	set := func(on bool) {
		t.Helper()
		if on {
			exec(allow + "true")
		} else {
			exec(allow + "false")
		}
	}
	set(false)
	exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name)
	ended := false
	end = func() {
		if !ended {
			ended = true
			set(true)
		}
	}
	t.Cleanup(end)
	return end
}

// Terminate ends every session on the database at dbURL once (SQLSTATE
// 57P01 to whoever was using one), as pg_terminate_backend by an operator
// or a pooler's restart does; new connections succeed at once.
func Terminate(t testing.TB, dbURL string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), ServerURL())
	if err != nil {
		t.Fatalf("pgtest: terminate: %v", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(context.Background(),
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
		DatabaseName(t, dbURL))
	if err != nil {
		t.Fatalf("pgtest: terminate: %v", err)
	}
}

// DatabaseName is the database a URL names.
func DatabaseName(t testing.TB, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" {
		t.Fatalf("pgtest: %s names no database", dbURL)
	}
	return name
}
