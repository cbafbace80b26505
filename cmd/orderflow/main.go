// Command orderflow is the dev stack behind `make run`: every service in one
// process, plus the embedded Kafka-protocol broker unless KAFKA_BROKERS names
// a real cluster. PostgreSQL and RabbitMQ are the local ones.
package main

import (
	"context"
	"fmt"
	"net/http"
	_ "net/http/pprof" // served only on PPROF_ADDR
	"os"
	"os/signal"
	"syscall"

	"github.com/orderflow/orderflow/internal/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first Ctrl-C, stop catching: a second one kills at once.
	context.AfterFunc(ctx, stop)
	// PPROF_ADDR (e.g. 127.0.0.1:6060) serves Go's profiles of the whole
	// stack: where its CPU goes under load is the question a benchmark
	// of the stack leaves.
	if addr := os.Getenv("PPROF_ADDR"); addr != "" {
		go func() { fmt.Fprintln(os.Stderr, "orderflow: pprof:", http.ListenAndServe(addr, nil)) }()
	}
	if err := devstack.Run(ctx, os.Stdout, devstack.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "orderflow:", err)
		os.Exit(1)
	}
}
