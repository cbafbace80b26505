// Package testenv holds the small things tests of several packages need
// from their environment: a free port, and waiting on a condition with a
// deadline instead of a fixed sleep.
package testenv

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Ports FreeAddr hands out: below Linux's ephemeral range (32768-60999),
// where a port the kernel chose for ":0" or for an outgoing connection's
// source could be given again to another test process before the service
// under test bound it. That happened: two packages' tests got the same
// port, and one test talked to the other's service.
const (
	firstTestPort = 20000
	testPorts     = 12768
)

// portLocks is where FreeAddr marks the ports it handed out, so that test
// processes running side by side never share one.
var portLocks = filepath.Join(os.TempDir(), "orderflow-test-ports")

// FreeAddr returns a 127.0.0.1 address with a port nothing listens on now
// and that no other test holds until t ends.
func FreeAddr(t testing.TB) string {
	t.Helper()
	if err := os.MkdirAll(portLocks, 0o755); err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		port := strconv.Itoa(firstTestPort + rand.IntN(testPorts))
		lock := filepath.Join(portLocks, port)
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			if fi, err := os.Stat(lock); err == nil && time.Since(fi.ModTime()) > time.Hour {
				_ = os.Remove(lock) // left by a run that was killed
			}
			continue
		}
		_ = f.Close()
		addr := net.JoinHostPort("127.0.0.1", port)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			_ = os.Remove(lock) // something else serves it
			continue
		}
		_ = ln.Close()
		t.Cleanup(func() { _ = os.Remove(lock) })
		return addr
	}
	t.Fatal("no free test port")
	return ""
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
