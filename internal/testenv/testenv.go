// Package testenv holds the small things tests of several packages need
// from their environment: a free port, and waiting on a condition with a
// deadline instead of a fixed sleep.
package testenv

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// FreeAddr returns a 127.0.0.1 address with a port nothing listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WaitFor polls cond until it holds, failing t after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stopped waits for a Run-like function's result on done and fails t when
// it is an error or does not come within d.
func Stopped(t testing.TB, done <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(d):
		t.Fatalf("Run did not stop within %s", d)
	}
}

// Running is a Run-like function started on a goroutine for a test.
type Running struct {
	cancel context.CancelFunc
	done   chan error
}

// Start runs run until Halt is called or the test ends.
func Start(t testing.TB, run func(context.Context) error) *Running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx) }()
	t.Cleanup(func() { r.Halt(t) })
	return r
}

// Stop cancels the run's context without waiting.
func (r *Running) Stop() { r.cancel() }

// Halt cancels the run and waits for it to return nil, failing t after
// 20 s. Later calls return at once.
func (r *Running) Halt(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		r.done <- nil
	case <-time.After(20 * time.Second):
		t.Error("Run did not stop within 20 s")
	}
}

// Done delivers the run's result once it has returned.
func (r *Running) Done() <-chan error { return r.done }

// SyncBuffer is a bytes.Buffer safe to read while another goroutine writes
// to it, e.g. a banner or log destination.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
