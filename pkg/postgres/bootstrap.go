package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Owner is a service's database and the role that owns it: the only role,
// superusers aside, that may connect to it.
type Owner struct {
	Database string
	Role     string
	Password string // "" sets none (a trust or peer server), and leaves one set before as it was
}

// Bootstrap makes o.Role a login role without any power beyond its own
// database (no superuser, no CREATEDB, no CREATEROLE), o.Database a
// database it owns with its public schema and everything in it, and
// CONNECT on it the role's alone (PUBLIC's revoked). It runs as adminURL's
// user, a superuser, and is idempotent: run again it changes nothing but a
// new password, and it takes over a database an earlier version created
// as the superuser, objects included. The role is not given
// pg_read_all_stats (earlier versions granted it; it is revoked), which
// would show it every session's statement texts: the relay's horizon
// (outbox_horizon) needs only each session's database and transaction id,
// which pg_stat_activity shows every role.
func Bootstrap(ctx context.Context, adminURL string, o Owner) error {
	if o.Database == "" || o.Role == "" {
		return errors.New("bootstrap: empty database or role name")
	}
	conn, err := connectSetup(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var super bool
	if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if !super {
		return fmt.Errorf("bootstrap: %s is not a superuser: the bootstrap creates roles and databases, set POSTGRES_ADMIN_URL to a superuser's URL", conn.Config().User)
	}
	role, db := pgx.Identifier{o.Role}.Sanitize(), pgx.Identifier{o.Database}.Sanitize()
	var exists, roleSuper bool
	err = conn.QueryRow(ctx, "SELECT true, rolsuper FROM pg_roles WHERE rolname = $1", o.Role).Scan(&exists, &roleSuper)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("bootstrap: look up role %s: %w", o.Role, err)
	}
	if roleSuper {
		// Never demote a superuser someone depends on (postgres itself).
		return fmt.Errorf("bootstrap: role %s is a superuser; a service's role must not be one: choose another name", o.Role)
	}
	attrs := " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
	if o.Password != "" {
		// CREATE and ALTER ROLE take no parameters: the password is quoted
		// as a literal.
		attrs += " PASSWORD " + quoteLiteral(o.Password)
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	if _, err := conn.Exec(ctx, verb+" ROLE "+role+attrs); err != nil && !duplicate(err) {
		return fmt.Errorf("bootstrap: %s role %s: %w", verb, o.Role, err)
	}
	statements := []string{
		"REVOKE pg_read_all_stats FROM " + role, // a warning, no error, when not a member
		// Not granted by default: PUBLIC's CONNECT lets any role in.
		"REVOKE ALL ON DATABASE " + db + " FROM PUBLIC",
		"GRANT CONNECT, TEMPORARY ON DATABASE " + db + " TO " + role,
	}
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", o.Database).Scan(&exists); err != nil {
		return fmt.Errorf("bootstrap: look up database %s: %w", o.Database, err)
	}
	if exists {
		statements = append([]string{"ALTER DATABASE " + db + " OWNER TO " + role}, statements...)
	} else if _, err := conn.Exec(ctx, "CREATE DATABASE "+db+" OWNER "+role); err != nil && !duplicate(err) {
		return fmt.Errorf("bootstrap: create database %s: %w", o.Database, err)
	}
	for _, s := range statements {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("bootstrap: %s: %w", s, err)
		}
	}
	return takeOver(ctx, adminURL, o)
}

// takeOver gives o.Role the public schema of its database and every
// object in it another role owns (tables, with their sequences and
// indexes, views, functions), so a database earlier runs migrated as the
// superuser keeps working under the role.
func takeOver(ctx context.Context, adminURL string, o Owner) error {
	dbURL, err := DatabaseURL(adminURL, o.Database)
	if err != nil {
		return err
	}
	conn, err := connectSetup(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	role := pgx.Identifier{o.Role}.Sanitize()
	owner := "(SELECT oid FROM pg_roles WHERE rolname = " + quoteLiteral(o.Role) + ")"
	_, err = conn.Exec(ctx, `
		DO $$
		DECLARE r record;
		BEGIN
			EXECUTE format('ALTER SCHEMA public OWNER TO %I', `+quoteLiteral(o.Role)+`);
			FOR r IN
				SELECT c.oid::regclass AS name FROM pg_class c
				WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
				  AND c.relowner <> `+owner+`
			LOOP
				EXECUTE format('ALTER TABLE %s OWNER TO %I', r.name, `+quoteLiteral(o.Role)+`);
			END LOOP;
			FOR r IN
				SELECT c.oid::regclass AS name FROM pg_class c
				WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'S'
				  AND c.relowner <> `+owner+`
				  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
			LOOP
				EXECUTE format('ALTER SEQUENCE %s OWNER TO %I', r.name, `+quoteLiteral(o.Role)+`);
			END LOOP;
			FOR r IN
				SELECT p.oid::regprocedure AS name FROM pg_proc p
				WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> `+owner+`
			LOOP
				EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.name, `+quoteLiteral(o.Role)+`);
			END LOOP;
		END $$`)
	if err != nil {
		return fmt.Errorf("bootstrap: give %s's objects to %s: %w", o.Database, role, err)
	}
	_, err = conn.Exec(ctx, "REVOKE ALL ON SCHEMA public FROM PUBLIC")
	if err != nil {
		return fmt.Errorf("bootstrap: revoke public schema of %s: %w", o.Database, err)
	}
	return nil
}

// DropOwner drops o's database and then its role (tests' cleanup).
func DropOwner(ctx context.Context, adminURL string, o Owner) error {
	if err := DropDatabase(ctx, adminURL, o.Database); err != nil {
		return err
	}
	conn, err := connectSetup(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{o.Role}.Sanitize())
	return err
}

// AsRole returns serverURL with its user and password replaced by role's
// and its database by database: how a service reaches its own database.
func AsRole(serverURL, database, role, password string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("parse postgres url: %w", err)
	}
	if password != "" {
		u.User = url.UserPassword(role, password)
	} else {
		u.User = url.User(role)
	}
	u.Path = "/" + database
	return u.String(), nil
}

// duplicate reports a concurrent bootstrap's win: the role or database
// exists now.
func duplicate(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "42P04" || pgErr.Code == "23505")
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings
// is on since PostgreSQL 9.1).
func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
