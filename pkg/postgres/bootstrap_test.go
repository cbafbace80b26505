package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/postgres"
)

func connect(t *testing.T, url string) (*pgx.Conn, error) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err == nil {
		t.Cleanup(func() { conn.Close(context.Background()) })
	}
	return conn, err
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// sqlState is err's SQLSTATE, "" for none.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// A service's role owns its database and nothing else: it cannot connect
// to another service's, let alone read its tables, nor create databases
// or roles; it is no superuser.
func TestRoleReachesOnlyItsOwnDatabase(t *testing.T) {
	t.Parallel()
	payments, warehouse := pgtest.NewOwner(t), pgtest.NewOwner(t)
	ctx := context.Background()

	w, err := connect(t, pgtest.OwnerURL(t, warehouse))
	if err != nil {
		t.Fatalf("the warehouse role cannot reach its own database: %v", err)
	}
	mustExec(t, w, "CREATE TABLE stock (sku text PRIMARY KEY, available int)")
	mustExec(t, w, "INSERT INTO stock VALUES ('sku-1', 3)")

	// payments' role, pointed at warehouse's database.
	cross, err := postgres.AsRole(pgtest.ServerURL(), warehouse.Database, payments.Role, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, cross); sqlState(err) != "42501" {
		t.Errorf("payments' role connecting to warehouse's database: %v, want permission denied (42501)", err)
	}
	// Even connected (CONNECT granted by mistake), no table of another
	// owner is readable.
	admin, err := connect(t, mustDatabaseURL(t, warehouse.Database))
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, admin, "GRANT CONNECT ON DATABASE "+pgx.Identifier{warehouse.Database}.Sanitize()+" TO "+pgx.Identifier{payments.Role}.Sanitize())
	p, err := connect(t, cross)
	if err != nil {
		t.Fatalf("connect once granted: %v", err)
	}
	var n int
	if err := p.QueryRow(ctx, "SELECT count(*) FROM public.stock").Scan(&n); sqlState(err) != "42501" {
		t.Errorf("payments' role reading warehouse's stock: %d, %v; want permission denied (42501)", n, err)
	}

	own, err := connect(t, pgtest.OwnerURL(t, payments))
	if err != nil {
		t.Fatal(err)
	}
	var super, createDB, createRole bool
	err = own.QueryRow(ctx, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user").Scan(&super, &createDB, &createRole)
	if err != nil || super || createDB || createRole {
		t.Errorf("role: superuser %t, createdb %t, createrole %t (%v); want none", super, createDB, createRole, err)
	}
	if _, err := own.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{payments.Database + "_x"}.Sanitize()); sqlState(err) != "42501" {
		t.Errorf("CREATE DATABASE as the role: %v, want permission denied", err)
	}
}

// Run again, Bootstrap changes nothing; run on a database the superuser
// created and migrated (as earlier versions did), it hands the role every
// table, sequence and function, so the role's migrations and writes go on.
func TestBootstrapIsIdempotentAndTakesOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	o := postgres.Owner{Database: name, Role: name}
	t.Cleanup(func() { _ = postgres.DropOwner(context.Background(), pgtest.ServerURL(), o) })
	admin, err := connect(t, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, admin, "CREATE TABLE orders (id bigserial PRIMARY KEY, status text)")
	mustExec(t, admin, "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1'")
	// What an earlier version granted, and a bootstrap takes back.
	mustExec(t, admin, "CREATE ROLE "+pgx.Identifier{o.Role}.Sanitize()+" LOGIN IN ROLE pg_read_all_stats")
	for range 2 {
		if err := postgres.Bootstrap(ctx, pgtest.ServerURL(), o); err != nil {
			t.Fatal(err)
		}
	}
	own, err := connect(t, pgtest.OwnerURL(t, o))
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, own, "INSERT INTO orders (status) VALUES ('placed')")
	mustExec(t, own, "ALTER TABLE orders ADD COLUMN note text")
	mustExec(t, own, "CREATE OR REPLACE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1'")
	mustExec(t, own, "CREATE TABLE later (id int)")
	var stats bool
	if err := own.QueryRow(ctx, "SELECT pg_has_role('pg_read_all_stats', 'MEMBER')").Scan(&stats); err != nil || stats {
		t.Errorf("after the bootstrap the role is a member of pg_read_all_stats: %v, %v", stats, err)
	}
}

// Bootstrap refuses to make a superuser a service's role, and to run as
// anyone but a superuser.
func TestBootstrapRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if err := postgres.Bootstrap(ctx, pgtest.ServerURL(), postgres.Owner{Database: "orderflow_nope", Role: "postgres"}); err == nil ||
		!strings.Contains(err.Error(), "superuser") {
		t.Errorf("the postgres role as a service's: %v, want refused", err)
	}
	o := pgtest.NewOwner(t)
	other := postgres.Owner{Database: o.Database + "_other", Role: o.Role + "_other"}
	if err := postgres.Bootstrap(ctx, pgtest.OwnerURL(t, o), other); err == nil || !strings.Contains(err.Error(), "POSTGRES_ADMIN_URL") {
		t.Errorf("bootstrap as a service's role: %v, want refused naming POSTGRES_ADMIN_URL", err)
	}
}

func mustDatabaseURL(t *testing.T, name string) string {
	t.Helper()
	u, err := postgres.DatabaseURL(pgtest.ServerURL(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
