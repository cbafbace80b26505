// Command chaos is make chaos: the system as separate processes under load,
// one fault after another, with an invariant check after each (package
// internal/chaos). Run it through scripts/chaos, which restores PostgreSQL
// and RabbitMQ even if this process is killed.
//
//	chaos [-soak] [-only a,b] [-dir D]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/orderflow/orderflow/internal/chaos"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/services/email"
)

func main() {
	soak := flag.Bool("soak", false, "the long run: about 20,000 orders through every scenario")
	only := flag.String("only", "", "comma-separated scenarios to run (default all)")
	dir := flag.String("dir", chaos.DefaultDir(), "run directory: binaries, logs, broker data")
	flag.Parse()

	s := chaos.Short()
	if *soak {
		s = chaos.Soak()
	}
	s.Dir, s.Out = *dir, os.Stdout
	if *only != "" {
		s.Only = strings.Split(*only, ",")
	}
	s.PostgresURL = os.Getenv("POSTGRES_URL")
	if s.PostgresURL == "" {
		s.PostgresURL = postgres.DefaultURL
	}
	s.AMQPURL = os.Getenv("AMQP_URL")
	if s.AMQPURL == "" {
		s.AMQPURL = email.DefaultAMQPURL
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := chaos.Run(ctx, s); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}
