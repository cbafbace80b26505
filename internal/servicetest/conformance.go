package servicetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/service"
)

// Conformance describes a consuming service to the suite every service
// runs (RunConformance): what it is, an input that has an effect, and how
// to count that effect.
type Conformance struct {
	Name string // the service's name: group orderflow-<name>, dlq.<name>
	// Run runs the service with the suite's shared settings.
	Run func(ctx context.Context, cfg service.Config) error
	// Prepare, when set, writes what must exist before the order's Input
	// is produced, in the service's database (orders: the order itself).
	Prepare func(ctx context.Context, pool *pgxpool.Pool, orderID string) error
	// Input is what makes the service act for a new order: events it
	// consumes, produced in order.
	Input func(orderID string) []contract.Event
	// Effects counts what the service did for the order in its database
	// (rows written, events in its outbox, timers): one Input's worth must
	// never be counted twice.
	Effects func(ctx context.Context, pool *pgxpool.Pool, orderID string) (int, error)
	// Access, for a service internal/registry does not list, is what a
	// secured test broker (KAFKA_TEST_SECURITY=on) grants its user; the
	// registry's services have theirs.
	Access *kafka.Access
}

// OutboxAndTimers counts the rows of the order in the service's outbox
// and timers, the effects of most services.
func OutboxAndTimers(ctx context.Context, pool *pgxpool.Pool, orderID string) (int, error) {
	var n int
	err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox WHERE key = $1) + (SELECT count(*) FROM timers WHERE key = $1)`, orderID).Scan(&n)
	return n, err
}

// RunConformance checks the guarantees every consuming service must keep,
// each against the real database and broker: a duplicate delivery changes
// nothing; a poison record goes to dlq.<name> and the partition goes on; a
// crash between the transaction's commit and the offset commit (the
// group's offsets set back, as a lost commit leaves them) redelivers
// without a second effect; a rebalance while records flow, and a shutdown
// with records in hand, leave every input applied exactly once.
func RunConformance(t *testing.T, c Conformance) {
	if testing.Short() {
		t.Skip("runs the service through faults")
	}
	s := &suite{c: c, broker: kafkatest.Start(t)}
	if c.Access != nil {
		s.broker.Grant(t, *c.Access)
	}
	s.cfg = Config(t, s.broker)
	s.pool = Pool(t, s.cfg)
	s.producer = NewProducer(t, s.broker)
	s.group = "orderflow-" + c.Name
	first := s.start(t)

	var want int // one input's effects
	t.Run("duplicate delivery", func(t *testing.T) {
		id := newOrderID()
		recs := s.produce(t, id)
		want = s.waitEffects(t, id, func(n int) bool { return n > 0 })
		for _, r := range recs {
			again := &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
			if err := s.producer.cl.ProduceSync(context.Background(), again).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		s.waitPast(t, s.latest(t)...)
		if got := s.effects(t, id); got != want {
			t.Errorf("after a verbatim redelivery: %d effects, want %d", got, want)
		}
	})
	if want == 0 {
		t.Fatal("the input had no effect; the suite cannot go on")
	}

	t.Run("poison", func(t *testing.T) {
		topic := s.inputTopic(t)
		key := newOrderID()
		if err := s.producer.cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte("not json")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		s.waitDeadLetter(t, key)
		id := newOrderID()
		s.produce(t, id)
		s.waitEffects(t, id, func(n int) bool { return n == want })
	})

	t.Run("crash between commit and offset commit", func(t *testing.T) {
		id := newOrderID()
		recs := s.produce(t, id)
		s.waitEffects(t, id, func(n int) bool { return n == want })
		s.waitPast(t, recs...)
		first.Halt(t)
		s.rewind(t, recs) // the offset commit lost: redelivered from the input
		first = s.start(t)
		s.waitPast(t, recs...)
		if got := s.effects(t, id); got != want {
			t.Errorf("after redelivery of committed records: %d effects, want %d", got, want)
		}
	})

	t.Run("rebalance", func(t *testing.T) {
		ids := s.produceMany(t, 40)
		second := s.start(t) // joins: partitions move to it
		more := s.produceMany(t, 40)
		first.Halt(t) // leaves: they move back
		first = second
		s.allOnce(t, append(ids, more...), want)
	})

	t.Run("shutdown with records in hand", func(t *testing.T) {
		ids := s.produceMany(t, 80)
		first.Halt(t) // at once: records in hand and queued
		first = s.start(t)
		s.allOnce(t, ids, want)
	})
	first.Halt(t)
}

type suite struct {
	c        Conformance
	broker   *kafkatest.Broker
	cfg      service.Config
	pool     *pgxpool.Pool
	producer *Producer
	group    string
}

// start runs an instance of the service on a port of its own, ready.
func (s *suite) start(t *testing.T) *testenv.Running {
	t.Helper()
	cfg := s.cfg
	cfg.HTTPAddr = testenv.FreeAddr(t)
	r := testenv.Start(t, func(ctx context.Context) error { return s.c.Run(ctx, cfg) })
	WaitReady(t, "http://"+cfg.HTTPAddr)
	return r
}

func newOrderID() string { return uuid.Must(uuid.NewV7()).String() }

// produce writes the order's input and returns its records as written.
func (s *suite) produce(t *testing.T, id string) []*kgo.Record {
	t.Helper()
	s.prepare(t, id)
	var recs []*kgo.Record
	for _, ev := range s.c.Input(id) {
		recs = append(recs, s.producer.ProduceAt(t, ev))
	}
	return recs
}

// produceMany writes the inputs of n new orders in one batch.
func (s *suite) produceMany(t *testing.T, n int) []string {
	t.Helper()
	ids := make([]string, n)
	var evs []contract.Event
	for i := range ids {
		ids[i] = newOrderID()
		s.prepare(t, ids[i])
		evs = append(evs, s.c.Input(ids[i])...)
	}
	s.producer.ProduceAll(t, evs...)
	return ids
}

func (s *suite) prepare(t *testing.T, id string) {
	t.Helper()
	if s.c.Prepare == nil {
		return
	}
	if err := s.c.Prepare(context.Background(), s.pool, id); err != nil {
		t.Fatalf("prepare order %s: %v", id, err)
	}
}

func (s *suite) effects(t *testing.T, id string) int {
	t.Helper()
	n, err := s.c.Effects(context.Background(), s.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (s *suite) waitEffects(t *testing.T, id string, ok func(int) bool) int {
	t.Helper()
	var n int
	testenv.WaitFor(t, 30*time.Second, "effects of order "+id, func() bool {
		n = s.effects(t, id)
		return ok(n)
	})
	return n
}

// allOnce waits until every order has want effects, then checks none has
// more.
func (s *suite) allOnce(t *testing.T, ids []string, want int) {
	t.Helper()
	testenv.WaitFor(t, 60*time.Second, "every input applied", func() bool {
		return !slices.ContainsFunc(ids, func(id string) bool { return s.effects(t, id) < want })
	})
	time.Sleep(200 * time.Millisecond) // a second application would show now
	for _, id := range ids {
		if got := s.effects(t, id); got != want {
			t.Errorf("order %s: %d effects, want %d", id, got, want)
		}
	}
}

// inputTopic is the topic of the service's input.
func (s *suite) inputTopic(t *testing.T) string {
	t.Helper()
	evs := s.c.Input(newOrderID())
	topic, ok := contract.TopicOf(evs[0].Name())
	if !ok {
		t.Fatalf("no topic for %s", evs[0].Name())
	}
	return topic
}

// latest is the last record of each partition of the input's topic, for
// waitPast: the group is past everything written so far.
func (s *suite) latest(t *testing.T) []*kgo.Record {
	t.Helper()
	adm := kadm.NewClient(s.producer.cl)
	ends, err := adm.ListEndOffsets(context.Background(), s.inputTopic(t))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			recs = append(recs, &kgo.Record{Topic: o.Topic, Partition: o.Partition, Offset: o.Offset - 1})
		}
	})
	return recs
}

func (s *suite) waitPast(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	WaitConsumed(t, s.broker, s.group, recs...)
}

// rewind sets the group's offsets back to recs, as if the commits after
// them had been lost.
func (s *suite) rewind(t *testing.T, recs []*kgo.Record) {
	t.Helper()
	offsets := kadm.Offsets{}
	for _, r := range recs {
		offsets.Add(kadm.Offset{Topic: r.Topic, Partition: r.Partition, At: r.Offset, LeaderEpoch: -1})
	}
	resp, err := kadm.NewClient(s.producer.cl).CommitOffsets(context.Background(), s.group, offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("set the group's offsets back: %v", err)
	}
}

// waitDeadLetter waits for a record keyed key on dlq.<name>.
func (s *suite) waitDeadLetter(t *testing.T, key string) {
	t.Helper()
	cl, err := kgo.NewClient(s.broker.Opts(kgo.ConsumeTopics(consumer.DLQTopic(s.c.Name)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		found := false
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { found = found || string(r.Key) == key })
		if found {
			return
		}
	}
	t.Fatalf("no dead letter keyed %s on %s within 30 s", key, consumer.DLQTopic(s.c.Name))
}
