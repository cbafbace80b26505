package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/pkg/events/contract"
)

// kafkaTimeout bounds one call's Kafka work: listing, reading every topic
// to its high watermark, and the groups' offsets.
const kafkaTimeout = 30 * time.Second

// tracked are the events whose effect must happen at most once per order,
// each with its index in a trail. An array, so a trail's arrays are sized
// by it.
var tracked = [...]string{
	"OrderPlaced", "OrderCancelled",
	"PaymentCaptured", "PaymentFailed", "PaymentRefunded",
	"StockUnavailable", "PickScheduled", "OrderShipped", "PickCancelled",
	"PointsAwarded",
}

var trackedIndex = func() map[string]int {
	m := make(map[string]int, len(tracked))
	for i, e := range tracked {
		m[e] = i
	}
	return m
}()

// precedes are the per-order rules of one topic: when the second event is
// there, the first came before it (the first occurrence of each, in
// offset order).
var precedes = [][2]string{
	{"OrderPlaced", "OrderCancelled"},
	{"PaymentCaptured", "PaymentRefunded"},
	{"PickScheduled", "OrderShipped"},
	{"PickScheduled", "PickCancelled"},
}

// excludes are events of which an order has one at most: one decision
// each (a payment captured or failed, a pick scheduled or stock
// unavailable, a pick shipped or cancelled).
var excludes = [][2]string{
	{"PaymentCaptured", "PaymentFailed"},
	{"PickScheduled", "StockUnavailable"},
	{"OrderShipped", "PickCancelled"},
}

// kafkaView is what the broker holds: every event of the four event
// topics folded into one trail per order, the dead letters, and each
// group's lag.
type kafkaView struct {
	trails  map[string]*trail // by orderId
	records int               // records read from the event topics
	copies  int               // records repeating an eventId read before: duplicates delivered
	// strangers are records of the event topics that are neither an
	// event of the topic (with the order as key) nor an expected poison.
	strangers []string
	dead      []kafkaDead
	lag       map[string]map[string]int64 // group → topic → records behind
}

// trail is one order's events in the event topics.
type trail struct {
	ids   [len(tracked)][]string // distinct eventIds of each tracked event, in offset order
	first [len(tracked)]int64    // offset of each event's first record
}

// kafkaDead is one record of a dlq.* topic.
type kafkaDead struct {
	topic     string
	partition int32
	offset    int64
	origin    string // x-dlq-topic
	cause     string // x-dlq-error
	value     []byte
}

// readKafka lists the high watermarks of the event topics and every dlq.*
// topic, reads each partition from its start up to them (a consumer of its
// own, no group), and reads each service group's committed offsets.
func readKafka(ctx context.Context, brokers []string, poison poisonIndex) (*kafkaView, error) {
	if len(brokers) == 0 {
		return nil, errors.New("no brokers in the topology")
	}
	ctx, cancel := context.WithTimeout(ctx, kafkaTimeout)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	listed, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	topics := append([]string(nil), eventTopics...)
	for _, t := range eventTopics {
		if !listed.Has(t) {
			return nil, fmt.Errorf("topic %s does not exist yet", t)
		}
	}
	for _, t := range listed.Names() {
		if strings.HasPrefix(t, "dlq.") {
			topics = append(topics, t)
		}
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets: %w", err)
	}

	v := &kafkaView{trails: map[string]*trail{}}
	if err := v.read(ctx, brokers, starts, ends, poison); err != nil {
		return nil, err
	}
	if v.lag, err = groupLag(ctx, adm, starts, ends); err != nil {
		return nil, err
	}
	return v, nil
}

// read consumes every partition of ends from its start offset to its end
// offset, folding each record into v.
func (v *kafkaView) read(ctx context.Context, brokers []string, starts, ends kadm.ListedOffsets, poison poisonIndex) error {
	begin := map[string]map[int32]kgo.Offset{}
	want := map[string]map[int32]int64{} // topic → partition → end still to reach
	left := 0
	ends.Each(func(o kadm.ListedOffset) {
		at := int64(0)
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok {
			at = s.Offset
		}
		if at >= o.Offset {
			return // empty
		}
		if begin[o.Topic] == nil {
			begin[o.Topic], want[o.Topic] = map[int32]kgo.Offset{}, map[int32]int64{}
		}
		begin[o.Topic][o.Partition] = kgo.NewOffset().At(at)
		want[o.Topic][o.Partition] = o.Offset
		left++
	})
	if left == 0 {
		return nil
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(begin),
		kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return err
	}
	defer rd.Close()
	for left > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read topics (%d partitions not read to their end): %w", left, err)
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return fmt.Errorf("read %s %d: %w", errs[0].Topic, errs[0].Partition, errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Topic][r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			v.add(r, poison)
			if r.Offset+1 >= end {
				delete(want[r.Topic], r.Partition)
				left--
			}
		})
	}
	return nil
}

// eventEnvelope is the part of an event the checker reads.
type eventEnvelope struct {
	Event   string `json:"event"`
	EventID string `json:"eventId"`
	OrderID string `json:"orderId"`
}

// add folds one record into the view: a dead letter is kept, an event
// joins its order's trail, anything else is a stranger unless it is an
// expected poison.
func (v *kafkaView) add(r *kgo.Record, poison poisonIndex) {
	if strings.HasPrefix(r.Topic, "dlq.") {
		d := kafkaDead{topic: r.Topic, partition: r.Partition, offset: r.Offset, value: r.Value}
		for _, h := range r.Headers {
			switch h.Key {
			case "x-dlq-topic":
				d.origin = string(h.Value)
			case "x-dlq-error":
				d.cause = string(h.Value)
			}
		}
		v.dead = append(v.dead, d)
		return
	}
	v.records++
	if poison.find(r.Topic, r.Value) >= 0 {
		return
	}
	var env eventEnvelope
	if err := json.Unmarshal(r.Value, &env); err != nil || env.EventID == "" || env.OrderID == "" {
		v.strangers = append(v.strangers, fmt.Sprintf("%s: not an event and no expected poison: %s", recordAt(r), preview(r.Value)))
		return
	}
	i, ok := trackedIndex[env.Event]
	if topic, _ := contract.TopicOf(env.Event); !ok || topic != r.Topic {
		v.strangers = append(v.strangers, fmt.Sprintf("%s: %s %s is no event of this topic", recordAt(r), env.Event, env.EventID))
		return
	}
	order := strings.ToLower(env.OrderID)
	if !strings.EqualFold(string(r.Key), env.OrderID) {
		// Keyed otherwise, it may sit in another partition than the
		// order's other events: their order is lost.
		v.strangers = append(v.strangers, fmt.Sprintf("%s: %s %s of order %s has key %q, not its orderId",
			recordAt(r), env.Event, env.EventID, order, r.Key))
	}
	t := v.trails[order]
	if t == nil {
		t = &trail{}
		v.trails[order] = t
	}
	for _, id := range t.ids[i] {
		if id == env.EventID {
			v.copies++
			return
		}
	}
	if len(t.ids[i]) == 0 {
		t.first[i] = r.Offset
	}
	t.ids[i] = append(t.ids[i], env.EventID)
}

// recordAt names where r is: "payments 3:17".
func recordAt(r *kgo.Record) string { return fmt.Sprintf("%s %d:%d", r.Topic, r.Partition, r.Offset) }

// groupLag is, for each service's group and each topic it consumes, how
// many records lie between its committed offsets (the partition's start
// where it committed none) and the high watermarks.
func groupLag(ctx context.Context, adm *kadm.Client, starts, ends kadm.ListedOffsets) (map[string]map[string]int64, error) {
	lag := map[string]map[string]int64{}
	services := map[string][]string{} // service → topics it consumes
	for topic, svcs := range consumersOf {
		for _, s := range svcs {
			services[s] = append(services[s], topic)
		}
	}
	for svc, topics := range services {
		group := "orderflow-" + svc
		committed, err := adm.FetchOffsets(ctx, group)
		if errors.Is(err, kerr.GroupIDNotFound) {
			committed, err = nil, nil // never committed: all of it is behind
		}
		if err == nil {
			err = committed.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("offsets of group %s: %w", group, err)
		}
		for _, topic := range topics {
			var behind int64
			for p, end := range ends[topic] {
				at := int64(0)
				if s, ok := starts.Lookup(topic, p); ok {
					at = s.Offset
				}
				if c, ok := committed.Lookup(topic, p); ok && c.At > at {
					at = c.At
				}
				if end.Offset > at {
					behind += end.Offset - at
				}
			}
			if behind > 0 {
				if lag[group] == nil {
					lag[group] = map[string]int64{}
				}
				lag[group][topic] = behind
			}
		}
	}
	return lag, nil
}
