package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/pkg/config"
)

// load drives the orders API at a fixed rate, open loop (internal/loadgen):
// a progress line a second on progress, then the summary on out (JSON with
// --json), the accepted orders in --out. It fails when a request got a 5xx
// or no answer, unless --allow-errors (chaos runs, which cause them on
// purpose).
func load(ctx context.Context, args []string, out, progress io.Writer) error {
	env := config.FromEnv()
	ordersURL := env.String("ORDERS_URL", loadgen.DefaultOrdersURL)
	warehouseURL := env.String("WAREHOUSE_URL", loadgen.DefaultWarehouseURL)
	fraudLimit := env.Int64("FRAUD_LIMIT_CENTS", loadgen.DefaultFraudLimitCents)
	if err := env.Err(); err != nil {
		return err
	}

	var cfg loadgen.Config
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Float64Var(&cfg.Rate, "rate", loadgen.DefaultRate, "orders per second")
	fs.DurationVar(&cfg.Duration, "duration", loadgen.DefaultDuration, "how long orders are sent")
	fs.StringVar(&cfg.OrdersURL, "url", ordersURL, "orders API")
	fs.StringVar(&cfg.WarehouseURL, "warehouse-url", warehouseURL, "warehouse API, to seed the out-of-stock SKU")
	mix := fs.String("mix", loadgen.DefaultMix().String(), "outcome=weight,...")
	fs.Int64Var(&cfg.FraudLimitCents, "fraud-limit-cents", fraudLimit, "the payments service's FRAUD_LIMIT_CENTS")
	outPath := fs.String("out", "", "file for the accepted orders: <orderId>\\t<outcome> a line")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the outcomes, customers and amounts; 0: random")
	fs.BoolVar(&cfg.Idempotency, "idempotency", false, "send an Idempotency-Key with each order")
	fs.IntVar(&cfg.MaxInFlight, "max-in-flight", 0, "requests waiting at most; more are dropped")
	fs.DurationVar(&cfg.Timeout, "timeout", loadgen.DefaultTimeout, "per request")
	asJSON := fs.Bool("json", false, "the summary as JSON")
	allowErrors := fs.Bool("allow-errors", false, "exit 0 despite 5xx answers and requests without an answer")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w\n%s", err, usage)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("load: unexpected argument %q\n%s", fs.Arg(0), usage)
	case cfg.Rate <= 0: // 0 would take loadgen's default
		return errors.New("--rate must be above 0")
	case cfg.Duration <= 0:
		return errors.New("--duration must be above 0")
	case cfg.MaxInFlight < 0:
		return errors.New("--max-in-flight must be above 0")
	}
	var err error
	if cfg.Mix, err = loadgen.ParseMix(*mix); err != nil {
		return fmt.Errorf("--%w", err)
	}
	cfg.Progress = func(s loadgen.Snapshot) { fmt.Fprintln(progress, "load:", s) }

	closeOut := func() error { return nil }
	if *outPath != "" {
		f, err := os.Create(*outPath)
		if err != nil {
			return err
		}
		defer f.Close() // again, when returning early: harmless
		w := bufio.NewWriter(f)
		cfg.Out = w
		closeOut = func() error { return errors.Join(w.Flush(), f.Close()) }
	}
	sum, err := loadgen.Run(ctx, cfg)
	if sum.RunID == "" { // nothing sent: bad settings or the seeding failed
		return err
	}
	err = errors.Join(err, closeOut())
	if *asJSON {
		b, jerr := json.MarshalIndent(sum, "", "  ")
		if jerr != nil {
			return jerr
		}
		_, jerr = fmt.Fprintf(out, "%s\n", b)
		err = errors.Join(err, jerr)
	} else {
		err = errors.Join(err, sum.WriteText(out))
	}
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted: the summary covers the orders sent until then")
	}
	if err != nil {
		return err
	}
	if sumErr := sum.Err(); sumErr != nil && !*allowErrors {
		return fmt.Errorf("%w; --allow-errors accepts them", sumErr)
	}
	return nil
}
