package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// outboxRebase renumbers a service's outbox after its relay's cursor guard
// tripped (outbox.ErrTxidsAhead: the database was restored into, or moved
// to, a cluster whose transaction ids are behind).
func outboxRebase(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("outbox rebase", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	svc := fs.String("service", "", "service whose outbox to rebase")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w\n%s", err, usage)
	}
	if !known(*svc) {
		return fmt.Errorf("--service must be one of %s", strings.Join(services, ", "))
	}
	pool, err := servicePool(ctx, *svc)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := outbox.Rebase(ctx, pool)
	if errors.Is(err, outbox.ErrNothingToRebase) {
		fmt.Fprintf(out, "%s: the outbox's transaction ids are not ahead of the server's; nothing to do\n", *svc)
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: outbox rebased; %d rows will be published, oldest first\n", *svc, n)
	return nil
}

// servicePool connects to a service's database on the POSTGRES_URL server.
func servicePool(ctx context.Context, svc string) (*pgxpool.Pool, error) {
	serverURL := os.Getenv("POSTGRES_URL")
	if serverURL == "" {
		serverURL = postgres.DefaultURL
	}
	dbURL, err := postgres.DatabaseURL(serverURL, databaseName(svc))
	if err != nil {
		return nil, err
	}
	pool, err := postgres.Connect(ctx, dbURL, 2)
	if err != nil {
		return nil, fmt.Errorf("%s database: %w", svc, err)
	}
	return pool, nil
}
