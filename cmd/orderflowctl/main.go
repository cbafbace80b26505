// Command orderflowctl is the operator's tool. This version has:
//
//	orderflowctl outbox replay --service S --since T
//
// which moves the service's relay back to the first outbox row created at or
// after T, so it publishes everything from there again (same eventIds,
// original order) for a consumer that joined late. T is RFC 3339 or a
// duration ago ("2h", "7d"). Rows older than OUTBOX_RETENTION are gone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/postgres"
)

const usage = `usage:
  orderflowctl outbox replay --service S --since T
      T: RFC 3339 time (2026-11-28T10:00:00Z) or a duration ago (30m, 2h, 7d)
environment: POSTGRES_URL (default ` + postgres.DefaultURL + `)`

// services whose databases have an outbox.
var services = []string{"orders", "payments", "warehouse", "loyalty", "email"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "orderflowctl:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, out io.Writer, now time.Time) error {
	if len(args) < 2 || args[0] != "outbox" || args[1] != "replay" {
		return errors.New(usage)
	}
	fs := flag.NewFlagSet("outbox replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	service := fs.String("service", "", "service whose outbox to replay")
	sinceArg := fs.String("since", "", "start of the range")
	if err := fs.Parse(args[2:]); err != nil {
		return fmt.Errorf("%w\n%s", err, usage)
	}
	if !known(*service) {
		return fmt.Errorf("--service must be one of %s", strings.Join(services, ", "))
	}
	since, err := parseTime(*sinceArg, now)
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if since.After(now) {
		return errors.New("--since is in the future")
	}
	serverURL := os.Getenv("POSTGRES_URL")
	if serverURL == "" {
		serverURL = postgres.DefaultURL
	}
	dbURL, err := postgres.DatabaseURL(serverURL, "orderflow_"+*service)
	if err != nil {
		return err
	}
	pool, err := postgres.Connect(ctx, dbURL, 2)
	if err != nil {
		return fmt.Errorf("%s database: %w", *service, err)
	}
	defer pool.Close()
	n, err := outbox.Replay(ctx, pool, since)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: relay moved back to %s; %d outbox rows will be published again\n",
		*service, since.Format(time.RFC3339), n)
	return nil
}

func known(s string) bool {
	for _, v := range services {
		if v == s {
			return true
		}
	}
	return false
}

// parseTime takes RFC 3339 or a duration before now, with "d" for days.
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("required")
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor a duration (30m, 2h, 7d)", s)
	}
	return now.Add(-d), nil
}
