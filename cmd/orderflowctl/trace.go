package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
)

// traceConfig says where an order's story is kept: each service's
// database, found as the services find it (DATABASE_PREFIX), and Kafka.
type traceConfig struct {
	databases map[string]string // service → database URL
	brokers   []string
}

// traceConfigFromEnv reads the variables the services read.
func traceConfigFromEnv() (traceConfig, error) {
	e := config.FromEnv()
	serverURL := e.String("POSTGRES_URL", postgres.DefaultURL)
	prefix := e.String("DATABASE_PREFIX", "orderflow_")
	brokers := kafka.ParseBrokers(e.String("KAFKA_BROKERS", ""))
	if err := e.Err(); err != nil {
		return traceConfig{}, err
	}
	if len(brokers) == 0 {
		brokers = []string{service.DefaultBroker}
	}
	c := traceConfig{databases: map[string]string{}, brokers: brokers}
	serverURL = postgres.WithApplicationName(serverURL, "orderflowctl")
	for _, name := range services {
		u, err := postgres.DatabaseURL(serverURL, prefix+name)
		if err != nil {
			return traceConfig{}, fmt.Errorf("POSTGRES_URL: %w", err)
		}
		c.databases[name] = u
	}
	return c, nil
}

// traceCmd prints the order's timeline, then what has not happened.
func traceCmd(ctx context.Context, args []string, out io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "the trace as JSON")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w\n%s", err, usage)
	}
	arg, extra := fs.Arg(0), fs.NArg() > 1
	if extra { // flags after the id, as people type them
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return fmt.Errorf("%w\n%s", err, usage)
		}
		extra = fs.NArg() > 0
	}
	if arg == "" || extra {
		return fmt.Errorf("trace takes one order id\n%s", usage)
	}
	id, err := uuid.Parse(arg)
	if err != nil {
		return fmt.Errorf("%q is not an order id: order ids are UUIDs, as in the Location of POST /orders", arg)
	}
	cfg, err := traceConfigFromEnv()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	f, err := gatherTrace(ctx, cfg, id.String())
	if err != nil {
		return err
	}
	tr := buildTrace(f, now)
	if *asJSON {
		b, err := json.MarshalIndent(tr, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\n", b)
	} else {
		printTrace(out, tr)
	}
	if len(tr.Unavailable) > 0 {
		return errors.New("some sources did not answer: the trace may lack steps (see above)")
	}
	return nil
}

// errUnknownOrder is returned for an id the orders database does not hold.
var errUnknownOrder = errors.New("unknown order")

// gatherTrace reads everything the system keeps about the order. The
// orders database must answer: it says whether the order exists. Any
// other source that does not answer is named in facts.unavailable.
func gatherTrace(ctx context.Context, cfg traceConfig, orderID string) (*facts, error) {
	pools := map[string]*pgxpool.Pool{}
	defer func() {
		for _, p := range pools {
			p.Close()
		}
	}()
	f := &facts{orderID: orderID}
	for _, name := range services {
		p, err := postgres.Connect(ctx, cfg.databases[name], 1)
		if err != nil {
			if name == "orders" {
				return nil, fmt.Errorf("orders database: %w (is PostgreSQL up, and POSTGRES_URL and DATABASE_PREFIX as the services have them?)", err)
			}
			f.unavailable = append(f.unavailable, fmt.Sprintf("%s database: %v", name, err))
			continue
		}
		pools[name] = p
	}
	found, err := readOrder(ctx, pools["orders"], f)
	if err != nil {
		return nil, fmt.Errorf("orders database: %w", err)
	}
	if !found {
		return nil, fmt.Errorf("%w %s: the orders database (%s) has no such order; check the id, and POSTGRES_URL and DATABASE_PREFIX",
			errUnknownOrder, orderID, dbName(cfg.databases["orders"]))
	}
	since := f.order.createdAt.Add(-time.Minute) // clocks of the relays and of PostgreSQL may differ a little
	for _, name := range services {
		if p := pools[name]; p != nil {
			if err := readService(ctx, p, name, f, since); err != nil {
				f.unavailable = append(f.unavailable, fmt.Sprintf("%s database: %v", name, err))
			}
		}
	}
	if err := readKafka(ctx, cfg.brokers, f, since); err != nil {
		f.unavailable = append(f.unavailable, fmt.Sprintf("kafka %s: %v", strings.Join(cfg.brokers, ","), err))
	}
	// The inbox keeps eventIds only, so it is asked about the events found
	// above.
	// A service marks an event handled, changes its own rows, fires its
	// timers and writes its outbox in one transaction, and the relay
	// publishes after, so the service's rows are read again after its
	// inbox and after Kafka: read before, a timer or a status could be
	// older than a step the trace shows as done.
	ids := f.eventIDs()
	for _, name := range services {
		p := pools[name]
		if p == nil || len(ids) == 0 {
			continue
		}
		if err := readInbox(ctx, p, name, ids, f); err != nil {
			f.unavailable = append(f.unavailable, fmt.Sprintf("%s inbox: %v", name, err))
			continue
		}
		f.forget(name)
		err := readService(ctx, p, name, f, since)
		if err == nil && name == "orders" {
			_, err = readOrder(ctx, p, f)
		}
		if err != nil {
			f.unavailable = append(f.unavailable, fmt.Sprintf("%s database: %v", name, err))
		}
	}
	return f, nil
}

// dbName is the database of a URL, for messages.
func dbName(dbURL string) string {
	if i := strings.LastIndex(dbURL, "/"); i >= 0 {
		name, _, _ := strings.Cut(dbURL[i+1:], "?")
		return name
	}
	return dbURL
}

// printTrace writes the trace as a header, a table of the steps and the
// list of what is missing.
func printTrace(w io.Writer, t *trace) {
	fmt.Fprintf(w, "order %s  %s%s  placed %s", t.OrderID, t.Status, parens(t.CancelReason), t.PlacedAt.UTC().Format(time.RFC3339Nano))
	if t.CorrelationID != "" {
		fmt.Fprintf(w, "  correlation %s", t.CorrelationID)
	}
	fmt.Fprintf(w, "\nstate: %s\n\n", strings.Join(t.State, "; "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\t+PREV\t+ORDER\tSERVICE\tSTEP\tHOP")
	for _, s := range t.Steps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", clock(s.At), dur(msDuration(s.SincePrevMs)), dur(msDuration(s.SinceOrderMs)), s.Service, s.What, s.Hop)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	if len(t.Missing) == 0 {
		fmt.Fprintf(w, "nothing missing: the order's story is complete (%s)\n", t.Status)
	} else {
		fmt.Fprintf(w, "not happened yet (%d):\n", len(t.Missing))
		for _, m := range t.Missing {
			fmt.Fprintf(w, "  - %s\n", m)
		}
	}
	for _, n := range t.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, u := range t.Unavailable {
		fmt.Fprintf(w, "unavailable: %s\n", u)
	}
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }
