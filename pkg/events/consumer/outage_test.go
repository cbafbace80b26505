package consumer_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/testenv"
)

// A database outage while records flow (connections refused and every
// session terminated, as in a PostgreSQL restart) spends no attempt and
// dead-letters nothing: each partition waits, /readyz says why, and when
// the database is back every record is handled once, each order's in
// order. With MaxAttempts 5 and a 1 ms backoff, counting these failures
// as attempts would dead-letter within milliseconds.
func TestDatabaseOutageDeadLettersNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r, reg := b.newRunner(t, applyEffect(""), nil)
	start(t, r)

	const orders, perOrder = 20, 15
	ids := make([]string, orders)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	var produced sync.WaitGroup
	produceRound := func(seq int) {
		recs := make([]*kgo.Record, 0, orders)
		for _, id := range ids {
			v, _ := placed(t, id, seq)
			recs = append(recs, b.record(id, v))
		}
		b.produce(t, recs...)
	}
	// Records keep coming before, during and after the outage.
	produced.Go(func() {
		for seq := 1; seq <= perOrder; seq++ {
			produceRound(seq)
			time.Sleep(300 * time.Millisecond)
		}
	})
	testenv.WaitFor(t, 20*time.Second, "records flowing", func() bool { return b.effects(t) >= orders })

	end := pgtest.Outage(t, b.pool.Config().ConnString())
	testenv.WaitFor(t, 20*time.Second, "/readyz to report the wait", func() bool {
		err := r.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), "waiting for infrastructure")
	})
	time.Sleep(3 * time.Second) // the outage lasts; records keep arriving
	end()
	produced.Wait()

	testenv.WaitFor(t, 60*time.Second, "every record handled", func() bool { return b.effects(t) == orders*perOrder })
	testenv.WaitFor(t, 20*time.Second, "ready again", func() bool { return r.Ready(context.Background()) == nil })
	if n := handled(t, reg, b.topic, "dead"); n != 0 {
		t.Errorf("%d records dead-lettered", n)
	}
	if n := b.dlqEnd(t); n != 0 {
		t.Errorf("dlq.%s holds %d records", b.service, n)
	}
	if n := b.count(t, "SELECT count(*) - count(DISTINCT event_id) FROM effects"); n != 0 {
		t.Errorf("%d effects applied twice", n)
	}
	// Each order's effects in seq order, in the order they were applied.
	if n := b.count(t, `SELECT count(*) FROM (
		SELECT seq, lag(seq) OVER (PARTITION BY order_id ORDER BY id) AS prev FROM effects) s
		WHERE prev IS NOT NULL AND seq <> prev + 1`); n != 0 {
		t.Errorf("%d effects out of order", n)
	}
	if got := gaugeValue(t, reg, "orderflow_infrastructure_retries_total"); got == 0 {
		t.Error("no infrastructure retry counted")
	}
}

// dlqEnd is how many records the test's DLQ topic holds.
func (b *bundle) dlqEnd(t *testing.T) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.broker.Addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), "dlq."+b.service)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// gaugeValue sums the series of one gauge or counter family in reg.
func gaugeValue(t testing.TB, reg interface {
	Gather() ([]*dto.MetricFamily, error)
}, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}
