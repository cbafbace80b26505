package consumer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/kafka"
)

// Two replicas of one group: each reports the lag of its own partitions,
// so the sum over both is the group's lag, not twice it.
func TestLagCountsEachPartitionOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	release := make(chan struct{})
	defer close(release)
	stuck := func(ctx context.Context, _ pgx.Tx, _ consumer.Message) error {
		select { // nothing commits, so every record stays lag
		case <-release:
		case <-ctx.Done():
		}
		return ctx.Err()
	}
	r1, reg1 := b.newRunner(t, stuck, nil)
	r2, reg2 := b.newRunner(t, stuck, nil)
	start(t, r1)
	start(t, r2)
	// Both own partitions before any record comes: a rebalance would wait
	// for the stuck handler.
	testenv.WaitFor(t, 30*time.Second, "both replicas own partitions", func() bool {
		_, parts1 := lagOf(t, reg1)
		_, parts2 := lagOf(t, reg2)
		return len(parts1) > 0 && len(parts2) > 0 && len(parts1)+len(parts2) == kafka.Partitions
	})

	const records = 40
	recs := make([]*kgo.Record, records)
	for i := range recs {
		value, _ := placed(t, uuid.NewString(), i)
		recs[i] = b.record(uuid.NewString(), value)
	}
	b.produce(t, recs...)

	var last string
	testenv.WaitFor(t, 30*time.Second, "both replicas report, and the lag adds up to the records", func() bool {
		sum1, parts1 := lagOf(t, reg1)
		sum2, parts2 := lagOf(t, reg2)
		last = formatLag(sum1, parts1, sum2, parts2)
		for p := range parts1 {
			if parts2[p] {
				t.Fatalf("partition %s reported by both replicas (%s)", p, last)
			}
		}
		return len(parts1) > 0 && len(parts2) > 0 && sum1+sum2 == records
	})
	t.Log(last)
}

// lagOf sums orderflow_consumer_lag in reg and names the partitions it has.
func lagOf(t *testing.T, reg *prometheus.Registry) (float64, map[string]bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	parts := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "orderflow_consumer_lag" {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue()
			var group, part string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "group":
					group = lp.GetValue()
				case "partition":
					part = lp.GetValue()
				}
			}
			if group == "" {
				t.Fatal("orderflow_consumer_lag has no group label")
			}
			parts[part] = true
		}
	}
	return sum, parts
}

func formatLag(sum1 float64, parts1 map[string]bool, sum2 float64, parts2 map[string]bool) string {
	return fmt.Sprintf("replica 1: %v over %d partitions; replica 2: %v over %d", sum1, len(parts1), sum2, len(parts2))
}
