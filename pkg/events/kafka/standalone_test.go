package kafka

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Faults injected over HTTP reach the broker's clients, and are removed.
func TestFaultHandler(t *testing.T) {
	e, err := StartEmbedded("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	if err := EnsureTopics(ctx, e.Addrs(), Security{}, "orders"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(FaultHandler(e.Cluster()))
	defer srv.Close()
	call := func(method, path string, want int) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d", method, path, resp.StatusCode, want)
		}
	}
	call(http.MethodPost, "/faults?requests=Teleport", http.StatusBadRequest)
	call(http.MethodPost, "/faults?requests=Produce&code=9999", http.StatusBadRequest)
	call(http.MethodPost, "/faults", http.StatusBadRequest)
	call(http.MethodPost, "/faults?requests=Produce&code=19", http.StatusCreated)

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.RecordRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = cl.ProduceSync(pctx, &kgo.Record{Topic: "orders", Value: []byte("x")}).FirstErr()
	if !errors.Is(err, kerr.NotEnoughReplicas) {
		t.Fatalf("produce with the fault: %v, want NOT_ENOUGH_REPLICAS", err)
	}
	call(http.MethodDelete, "/faults", http.StatusNoContent)
	if err := cl.ProduceSync(pctx, &kgo.Record{Topic: "orders", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("produce after the fault was removed: %v", err)
	}
}
