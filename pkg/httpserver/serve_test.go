package httpserver_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/httpserver"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// start runs ServeListener in the background and returns its result channel.
func start(ctx context.Context, ln net.Listener, h http.Handler, opts ...httpserver.Option) <-chan error {
	done := make(chan error, 1)
	go func() { done <- httpserver.ServeListener(ctx, ln, h, nil, opts...) }()
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("ServeListener did not return")
		return nil
	}
}

func TestServeListenerServesAndShutsDownCleanly(t *testing.T) {
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))

	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" {
		t.Errorf("body %q", b)
	}

	cancel()
	if err := wait(t, done); err != nil {
		t.Errorf("ServeListener = %v, want nil", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("still accepting connections after shutdown")
	}
}

func TestServeListenerLetsInFlightRequestFinish(t *testing.T) {
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	entered, release := make(chan struct{}), make(chan struct{})
	reqCtxErr := make(chan error, 1)
	done := start(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		reqCtxErr <- r.Context().Err()
		io.WriteString(w, "finished")
	}))

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()

	<-entered
	cancel() // shutdown begins with the request in flight
	// Shutdown must be waiting for the request: ServeListener has not
	// returned.
	select {
	case err := <-done:
		t.Fatalf("ServeListener returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)

	r := <-got
	if r.err != nil || r.body != "finished" {
		t.Errorf("request: %q, %v", r.body, r.err)
	}
	if err := <-reqCtxErr; err != nil {
		t.Errorf("request context cancelled by shutdown: %v", err)
	}
	if err := wait(t, done); err != nil {
		t.Errorf("ServeListener = %v, want nil", err)
	}
}

func TestServeListenerShutdownTimeout(t *testing.T) {
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	done := start(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	}), httpserver.WithShutdownTimeout(20*time.Millisecond))

	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	cancel()
	err := wait(t, done)
	if err == nil || !strings.Contains(err.Error(), "shutdown") {
		t.Errorf("ServeListener = %v, want a shutdown timeout error", err)
	}
}

func TestServeListenError(t *testing.T) {
	ln := listen(t) // holds the port
	defer ln.Close()
	addr := ln.Addr().String()
	err := httpserver.Serve(context.Background(), addr, http.NotFoundHandler(), nil)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Serve(%s) = %v, want an error naming the address", addr, err)
	}
}

func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // already done: Serve starts and shuts down at once
	if err := httpserver.Serve(ctx, "127.0.0.1:0", http.NotFoundHandler(), nil); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}
