// Package httpserver is the HTTP plumbing every Orderflow service shares:
// running a server with graceful shutdown (Serve), problem+json and JSON
// responses (WriteProblem, WriteJSON), the request duration histogram
// (Metrics), the /healthz, /readyz and /metrics endpoints (Health), and the
// first steps of reading input (ReadBody, DecodeObject, PathParam,
// InputError), and optional authentication of API keys and JWTs (Auth).
//
// Guarantees:
//   - Serve returns only after its server has stopped and its goroutine has
//     exited; in-flight requests get the shutdown timeout to finish, and
//     their contexts are not cancelled when the Serve context is.
//   - Error responses are RFC 9457 application/problem+json with a title
//     and status always filled in.
//   - The route label of orderflow_http_request_duration_seconds is the chi
//     route pattern, never the raw path, so its cardinality is bounded by
//     the routes a service registers.
//   - /readyz answers within ReadyTimeout plus 100 ms, however its checks
//     behave.
//   - DecodeObject refuses a body that is not Unicode text (invalid UTF-8,
//     an escaped lone surrogate) instead of letting encoding/json replace
//     what the client sent with U+FFFD.
//
// Not provided: the rules of fields (package contract's Fields), TLS,
// request logging, panic recovery.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultShutdownTimeout is how long Serve lets in-flight requests finish
// after its context is done, unless WithShutdownTimeout says otherwise.
const DefaultShutdownTimeout = 5 * time.Second

// Server timeouts. The API takes small JSON bodies (POST /orders is at most
// 64 KiB), so these only cut off slow or stuck clients.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// Option changes how Serve and ServeListener run the server.
type Option func(*options)

type options struct {
	shutdownTimeout time.Duration
}

// WithShutdownTimeout sets how long in-flight requests may take to finish
// after the context is done (default DefaultShutdownTimeout).
func WithShutdownTimeout(d time.Duration) Option {
	return func(o *options) { o.shutdownTimeout = d }
}

// Serve listens on the TCP address addr and serves h until ctx is done, then
// shuts down gracefully (see ServeListener). A failure to listen is returned
// at once; its message names the address.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger, opts ...Option) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		// net's error already reads "listen tcp <addr>: <cause>".
		return fmt.Errorf("httpserver: %w", err)
	}
	return ServeListener(ctx, ln, h, log, opts...)
}

// ServeListener serves h on ln until ctx is done, then stops accepting
// connections and waits up to the shutdown timeout for in-flight requests.
// It returns nil after a clean shutdown, an error if requests were still
// running at the timeout (their connections are then closed), and the
// server's error if serving fails before ctx is done. It closes ln.
//
// Request contexts carry ctx's values but are not cancelled with it, so
// requests in flight at shutdown can finish. log may be nil.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger, opts ...Option) error {
	o := options{shutdownTimeout: DefaultShutdownTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := context.WithoutCancel(ctx)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	addr := ln.Addr().String()
	log.Info("http server listening", "addr", addr)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("httpserver: serve %s: %w", addr, err)
	case <-ctx.Done():
	}

	log.Info("http server shutting down", "addr", addr, "timeout", o.shutdownTimeout)
	sctx, cancel := context.WithTimeout(base, o.shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		// Requests still running: cut their connections.
		_ = srv.Close()
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("httpserver: shutdown %s: %w", addr, err)
	}
	return nil
}
