package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/pkg/events/outbox"
)

func TestMetricsAndRetentionLoop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := prometheus.NewRegistry()
	o := b.newOutbox(t, func(c *outbox.Config) { c.Registerer = reg; c.Retention = time.Second })
	ctx := context.Background()
	orderID := uuid.NewString()
	write(t, ctx, b.pool, o, placed(orderID), cancelled(orderID))

	gauge := func(name string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
	if got := gauge("orderflow_outbox_pending"); got != 2 {
		t.Errorf("orderflow_outbox_pending = %v, want 2", got)
	}
	if got := gauge("orderflow_outbox_oldest_age_seconds"); got <= 0 {
		t.Errorf("orderflow_outbox_oldest_age_seconds = %v, want > 0", got)
	}

	startRelay(t, o)
	// The counter moves just after the cursor's commit.
	waitFor(t, "published and counted", func() bool { return pending(t, b.pool) == 0 && publishedTotal(t, reg, "orders") >= 2 })
	time.Sleep(100 * time.Millisecond) // a miscount would show now
	if got := publishedTotal(t, reg, "orders"); got != 2 {
		t.Errorf(`orderflow_relay_published_total{topic="orders"} = %v, want 2`, got)
	}
	if got := gauge("orderflow_outbox_pending"); got != 0 {
		t.Errorf("orderflow_outbox_pending after publishing = %v, want 0", got)
	}
	// The leader's retention loop (every Retention/10 here) deletes the
	// published rows once they are older than the retention.
	waitFor(t, "retention to delete published rows", func() bool { return count(t, b.pool, "true") == 0 })
}

// publishedTotal sums orderflow_relay_published_total{topic} over its
// events, 0 before the first count.
func publishedTotal(t *testing.T, reg *prometheus.Registry, topic string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "orderflow_relay_published_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var inTopic, hasEvent bool
			for _, l := range m.GetLabel() {
				inTopic = inTopic || l.GetName() == "topic" && l.GetValue() == topic
				hasEvent = hasEvent || l.GetName() == "event" && l.GetValue() != ""
			}
			if inTopic && !hasEvent {
				t.Fatal("orderflow_relay_published_total has no event label")
			}
			if inTopic {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
