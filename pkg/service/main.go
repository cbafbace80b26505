package service

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/orderflow/orderflow/pkg/config"
)

// Main runs a service as a command until SIGINT or SIGTERM; a second
// signal kills it at once. It reads LOG_LEVEL and LOG_FORMAT and, through
// fromEnv, the service's configuration; bad configuration exits 2 with one
// line naming every bad variable, a failed run exits 1.
func Main[C any](name string, fromEnv func() (C, error), run func(context.Context, C, *slog.Logger) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second Ctrl-C kills at once

	env := config.FromEnv()
	level := env.LogLevel("LOG_LEVEL", "info")
	format := env.OneOf("LOG_FORMAT", config.FormatJSON, config.FormatJSON, config.FormatText)
	cfg, err := fromEnv()
	if logErr := env.Err(); logErr != nil || err != nil {
		var msgs []string
		for _, e := range []error{logErr, err} {
			if e != nil {
				msgs = append(msgs, e.Error())
			}
		}
		fmt.Fprintln(os.Stderr, name+":", strings.Join(msgs, "; "))
		os.Exit(2)
	}
	log := config.NewLogger(os.Stderr, name, level, format)
	if err := run(ctx, cfg, log); err != nil {
		log.Error(name+" stopped", "error", err)
		os.Exit(1)
	}
}
