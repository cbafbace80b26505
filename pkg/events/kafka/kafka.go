// Package kafka holds the Kafka plumbing every service shares: creating
// and keeping topics through the admin API (the system's topic list is
// internal/registry's), client instrumentation, and the embedded
// Kafka-protocol broker that the dev stack and tests run when no real
// cluster is configured.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Partitions is the partition count of every Orderflow topic.
const Partitions = 12

// ParseBrokers splits a comma-separated KAFKA_BROKERS value.
func ParseBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// EnsureTopics creates the topics that do not exist yet, with Partitions
// partitions and the broker's default replication. Existing topics are left
// as they are. The client authenticates with sec.
func EnsureTopics(ctx context.Context, brokers []string, sec Security, topics ...string) error {
	cl, err := kgo.NewClient(append(sec.Opts(), kgo.SeedBrokers(brokers...))...)
	if err != nil {
		return fmt.Errorf("kafka admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopics(ctx, Partitions, -1, nil, topics...)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// EnsureTopicsRetrying is EnsureTopics retried with backoff (up to 30 s
// apart) until it succeeds or ctx is done, so a service can start while the
// broker is still down and get its topics once the broker is back.
func EnsureTopicsRetrying(ctx context.Context, brokers []string, sec Security, log *slog.Logger, topics ...string) {
	backoff := time.Second
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := EnsureTopics(actx, brokers, sec, topics...)
		cancel()
		if err == nil {
			log.Info("kafka topics ready", "topics", len(topics), "partitions", Partitions)
			return
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("kafka topics not created yet; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}
