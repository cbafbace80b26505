package chaos

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/events/contract"
)

// The checker reads every source of the system once per call and keeps
// nothing between calls, so it can be called every second or so until
// the report converges or a deadline passes. What it reads (one query per
// table, filtered to the accepted orders; each topic once, from its start
// to the high watermark listed first) is in check_db.go, check_kafka.go
// and check_amqp.go; what each outcome must end as, in check_orders.go.

// consumersOf names, for each topic, the services that consume it (docs/design.md
// "Processes and ports", each service's Spec.Topics): where a poison
// record of the topic must be dead-lettered, and the groups whose lag on
// it counts.
var consumersOf = func() map[string][]string {
	m := map[string][]string{}
	for _, s := range registry.Services {
		for _, t := range s.Consumes {
			m[t] = append(m[t], s.Name)
		}
	}
	return m
}()

// eventTopics are the topics the checker reads every record of.
var eventTopics = []string{contract.TopicOrders, contract.TopicPayments, contract.TopicWarehouse, contract.TopicLoyalty}

// maxLinesPerKind caps the lines of one kind in a report; the rest are
// counted in one line.
const maxLinesPerKind = 10

// Kinds of report lines, in the order a report lists them.
const (
	kindUnavailable   = "source unavailable"
	kindMissingOrder  = "accepted order missing"
	kindTwice         = "effect done twice"
	kindOutOfOrder    = "events out of order"
	kindStrangerDLQ   = "stranger dead letter"
	kindStrangerTopic = "stranger record"
	kindEnd           = "order end"
	kindPoison        = "poison"
	kindLag           = "lag"
)

var kindOrder = []string{kindUnavailable, kindMissingOrder, kindTwice, kindOutOfOrder, kindStrangerDLQ,
	kindStrangerTopic, kindEnd, kindPoison, kindLag}

// Check reads the live system described by top and holds it to exp:
// Violations are what can never heal, Pending what may still converge,
// Counts the figures for the table. It changes nothing in the system (no
// group commits, no acks: parked messages are read unacked and go back).
// A source it cannot reach gives a Pending line "source unavailable: ..."
// and the checks that need it are left out of that report.
func Check(ctx context.Context, top Topology, exp Expectation) Report {
	start := time.Now()
	accepted, invalid := canonical(exp.Orders)
	ids := make([]string, len(accepted))
	for i, a := range accepted {
		ids[i] = a.OrderID
	}
	poison := indexPoison(exp.Poison)

	// The broker and RabbitMQ are read beside the databases; nothing
	// judged compares them with a database read, so their moments need
	// not be ordered.
	var (
		wg   sync.WaitGroup
		kv   *kafkaView
		kerr error
		qv   *queueView
		qerr error
	)
	wg.Go(func() { kv, kerr = readKafka(ctx, top.Brokers, poison) })
	wg.Go(func() { qv, qerr = readQueues(ctx, top.AMQPURL, top.QueuePrefix) })
	dv, derrs := readDatabases(ctx, top, ids)
	wg.Wait()

	r := newReporter()
	r.count("orders", len(accepted))
	r.count("poison", len(exp.Poison))
	for _, id := range invalid {
		r.violation(kindMissingOrder, fmt.Sprintf("order %q: accepted but not a UUID", id))
	}
	for _, err := range derrs {
		r.pending(kindUnavailable, "source unavailable: "+err.Error())
	}
	if len(derrs) == 0 {
		checkOrders(r, dv, accepted)
		checkEmails(r, dv)
		checkBacklogs(r, dv)
	}
	if kerr != nil {
		r.pending(kindUnavailable, "source unavailable: kafka: "+kerr.Error())
	} else {
		checkTopics(r, kv)
		checkKafkaDeadLetters(r, kv, poison)
		checkLag(r, kv)
	}
	if qerr != nil {
		r.pending(kindUnavailable, "source unavailable: rabbitmq: "+qerr.Error())
	} else {
		checkQueues(r, qv, poison)
	}
	if kerr == nil && qerr == nil {
		checkPoisonArrived(r, kv, qv, poison)
	}
	r.count("check ms", int(time.Since(start).Milliseconds()))
	return r.report()
}

// canonical is the accepted orders with their ids in canonical form (as
// the databases print them), each once, and the ids that are not UUIDs.
func canonical(orders []Accepted) (accepted []Accepted, invalid []string) {
	seen := make(map[string]bool, len(orders))
	for _, o := range orders {
		id, err := uuid.Parse(o.OrderID)
		if err != nil {
			invalid = append(invalid, o.OrderID)
			continue
		}
		if o.OrderID = id.String(); !seen[o.OrderID] {
			seen[o.OrderID] = true
			accepted = append(accepted, o)
		}
	}
	return accepted, invalid
}

// poisonIndex finds an expected poison by where it was injected and its
// value, byte for byte.
type poisonIndex struct {
	list    []Poison
	byTopic map[string]map[string]int // topic → value → its first index in list
}

func indexPoison(ps []Poison) poisonIndex {
	idx := poisonIndex{list: ps, byTopic: map[string]map[string]int{}}
	for i, p := range ps {
		values := idx.byTopic[p.Topic]
		if values == nil {
			values = map[string]int{}
			idx.byTopic[p.Topic] = values
		}
		if _, dup := values[string(p.Value)]; !dup {
			values[string(p.Value)] = i
		}
	}
	return idx
}

// find returns the index of the poison injected to topic with value, or
// -1. It allocates nothing: every record read is looked up.
func (p poisonIndex) find(topic string, value []byte) int {
	if i, ok := p.byTopic[topic][string(value)]; ok {
		return i
	}
	return -1
}

// describe names poison i in a line: its place in Expectation.Poison,
// where it went and the start of its value.
func (p poisonIndex) describe(i int) string {
	where := "topic " + p.list[i].Topic
	if p.list[i].Topic == "" {
		where = "the email exchange"
	}
	return fmt.Sprintf("poison #%d (%s, %s)", i, where, preview(p.list[i].Value))
}

// preview is the start of a value, quoted, for a report line.
func preview(b []byte) string {
	const n = 40
	if len(b) > n {
		return fmt.Sprintf("%q…", b[:n])
	}
	return fmt.Sprintf("%q", b)
}

// reporter collects a report's lines by kind, each kind capped at
// maxLinesPerKind lines and a count of the rest.
type reporter struct {
	violations, pendings map[string]*capped
	counts               map[string]int
}

type capped struct {
	lines []string
	n     int
}

func newReporter() *reporter {
	return &reporter{violations: map[string]*capped{}, pendings: map[string]*capped{}, counts: map[string]int{}}
}

func (r *reporter) violation(kind, line string) { addLine(r.violations, kind, line) }
func (r *reporter) pending(kind, line string)   { addLine(r.pendings, kind, line) }
func (r *reporter) count(name string, n int)    { r.counts[name] += n }

func addLine(m map[string]*capped, kind, line string) {
	c := m[kind]
	if c == nil {
		c = &capped{}
		m[kind] = c
	}
	c.n++
	if len(c.lines) < maxLinesPerKind {
		c.lines = append(c.lines, line)
	}
}

func (r *reporter) report() Report {
	rep := Report{Violations: flattenLines(r.violations), Pending: flattenLines(r.pendings), Counts: r.counts}
	r.counts["violations"] = countLines(r.violations)
	r.counts["pending"] = countLines(r.pendings)
	return rep
}

func flattenLines(m map[string]*capped) []string {
	var out []string
	for _, kind := range kindOrder {
		c := m[kind]
		if c == nil {
			continue
		}
		out = append(out, c.lines...)
		if more := c.n - len(c.lines); more > 0 {
			out = append(out, fmt.Sprintf("… and %d more: %s", more, kind))
		}
	}
	return out
}

func countLines(m map[string]*capped) int {
	n := 0
	for _, c := range m {
		n += c.n
	}
	return n
}

// joinSorted is a map's keys with their counts, sorted: "a 2, b 1".
func joinSorted(m map[string]int64) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
