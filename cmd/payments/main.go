// Command payments runs the payments service alone. Configuration comes
// from the environment; see services/payments.ConfigFromEnv and DESIGN.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/services/payments"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second Ctrl-C kills at once

	env := config.FromEnv()
	level := env.LogLevel("LOG_LEVEL", "info")
	format := env.OneOf("LOG_FORMAT", config.FormatJSON, config.FormatJSON, config.FormatText)
	cfg, err := payments.ConfigFromEnv()
	if logErr := env.Err(); logErr != nil || err != nil {
		// One line, naming every bad variable.
		var msgs []string
		for _, e := range []error{logErr, err} {
			if e != nil {
				msgs = append(msgs, e.Error())
			}
		}
		fmt.Fprintln(os.Stderr, "payments:", strings.Join(msgs, "; "))
		os.Exit(2)
	}
	log := config.NewLogger(os.Stderr, "payments", level, format)
	if err := payments.Run(ctx, cfg, log); err != nil {
		log.Error("payments stopped", "error", err)
		os.Exit(1)
	}
}
