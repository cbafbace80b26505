package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/orderflow/orderflow/pkg/config"
)

// StandaloneConfig configures the embedded broker run as a process of its
// own (cmd/broker), as make chaos runs it so that it can be killed and
// restarted from its data directory like a real one.
type StandaloneConfig struct {
	Addr    string // Kafka listener; default 127.0.0.1:9092
	DataDir string // default .data/kafka
	// ControlAddr, when set, serves the fault-injection endpoint there
	// (see FaultHandler).
	ControlAddr string
	// Topics are created at start (cmd/broker: every topic of the
	// registry).
	Topics []string
}

// StandaloneConfigFromEnv reads BROKER_ADDR, BROKER_DATA_DIR and
// BROKER_CONTROL_ADDR.
func StandaloneConfigFromEnv() (StandaloneConfig, error) {
	e := config.FromEnv()
	c := StandaloneConfig{
		Addr:        e.String("BROKER_ADDR", "127.0.0.1:9092"),
		DataDir:     e.String("BROKER_DATA_DIR", ".data/kafka"),
		ControlAddr: e.String("BROKER_CONTROL_ADDR", ""),
	}
	return c, e.Err()
}

// RunStandalone runs the broker until ctx is done, with every Orderflow
// topic created, then closes it, saving its state to DataDir.
func RunStandalone(ctx context.Context, cfg StandaloneConfig, log *slog.Logger) error {
	e, err := StartEmbedded(cfg.Addr, cfg.DataDir)
	if err != nil {
		return err
	}
	defer e.Close()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := EnsureTopics(tctx, e.Addrs(), Security{}, cfg.Topics...); err != nil {
		return err
	}
	log.Info("broker ready", "addr", e.Addrs(), "data_dir", cfg.DataDir, "topics", len(cfg.Topics))
	if cfg.ControlAddr == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", cfg.ControlAddr)
	if err != nil {
		return fmt.Errorf("broker control: %w", err)
	}
	srv := &http.Server{Handler: FaultHandler(e.Cluster()), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	return srv.Shutdown(sctx)
}

// FaultHandler is an HTTP endpoint to inject kfake faults from outside the
// broker's process:
//
//	POST   /faults?requests=Produce,Fetch&code=19   fail those requests (Kafka error code; default 19, NOT_ENOUGH_REPLICAS) until removed
//	DELETE /faults                                  remove every fault
//	GET    /faults                                  {"faults": n, "hits": total requests failed}
func FaultHandler(c *kfake.Cluster) http.Handler {
	var (
		mu      sync.Mutex
		handles []*kfake.FaultHandle
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/faults" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case http.MethodPost:
			f, err := parseFault(r.URL.Query().Get("requests"), r.URL.Query().Get("code"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			handles = append(handles, c.Fault(f))
			w.WriteHeader(http.StatusCreated)
		case http.MethodDelete:
			for _, h := range handles {
				h.Remove()
			}
			handles = nil
			w.WriteHeader(http.StatusNoContent)
		case http.MethodGet:
			hits := 0
			for _, h := range handles {
				hits += int(h.Hits())
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]int{"faults": len(handles), "hits": hits})
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
}

// parseFault reads a comma-separated list of request names (kmsg's, e.g.
// Produce, Fetch, JoinGroup) and an error code.
func parseFault(requests, code string) (kfake.Fault, error) {
	f := kfake.Fault{Count: -1, Err: kerr.NotEnoughReplicas}
	for _, name := range strings.Split(requests, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		key := int16(-1)
		for k := int16(0); k <= kmsg.MaxKey; k++ {
			if strings.EqualFold(kmsg.NameForKey(k), name) {
				key = k
				break
			}
		}
		if key < 0 {
			return f, fmt.Errorf("unknown request %q", name)
		}
		f.Keys = append(f.Keys, kmsg.Key(key))
	}
	if len(f.Keys) == 0 {
		return f, errors.New("requests: name at least one (e.g. Produce,Fetch)")
	}
	if code != "" {
		n, err := strconv.ParseInt(code, 10, 16)
		var ke *kerr.Error
		if err != nil || !errors.As(kerr.ErrorForCode(int16(n)), &ke) || ke.Code != int16(n) {
			return f, fmt.Errorf("code %q is not a Kafka error code", code)
		}
		f.Err = ke
	}
	return f, nil
}
