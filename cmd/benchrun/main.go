// Command benchrun is the outside half of make bench: the whole system as
// processes under orderflowctl load's generator, its figures beside those
// of the in-process benchmarks (their go test -bench output, read from
// -gotest), written to bench/results.md with a chart (package
// internal/benchrun).
//
//	benchrun [-gotest a.txt,b.txt] [-results bench/results.md] [-chart bench/throughput-lag.svg] [-dir D]
//	         [-rate 1000] [-duration 20s] [-latency-rate 300]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/orderflow/orderflow/internal/benchrun"
)

func main() {
	cfg := benchrun.DefaultConfig()
	gotest := flag.String("gotest", "", "comma-separated files of go test -bench output")
	flag.StringVar(&cfg.Results, "results", cfg.Results, "the table (markdown)")
	flag.StringVar(&cfg.Chart, "chart", cfg.Chart, "the chart (SVG)")
	flag.StringVar(&cfg.Dir, "dir", cfg.Dir, "run directory: binaries, logs, broker data, samples")
	flag.Float64Var(&cfg.SustainedRate, "rate", cfg.SustainedRate, "orders/s of the sustained phase")
	flag.DurationVar(&cfg.SustainedFor, "duration", cfg.SustainedFor, "how long the sustained phase places orders")
	flag.Float64Var(&cfg.LatencyRate, "latency-rate", cfg.LatencyRate, "orders/s of the latency phase (POST 201 → PaymentCaptured)")
	flag.Parse()
	if *gotest != "" {
		cfg.GoTestOutputs = strings.Split(*gotest, ",")
	}
	if v := os.Getenv("POSTGRES_URL"); v != "" {
		cfg.PostgresURL = v
	}
	if v := os.Getenv("AMQP_URL"); v != "" {
		cfg.AMQPURL = v
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := benchrun.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}
