package chaos

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// checkTopics: per order, one eventId per effect, and each topic's events
// in order; records that are no event of their topic.
func checkTopics(r *reporter, v *kafkaView) {
	r.count("events", v.records)
	r.count("duplicates delivered", v.copies)
	for _, s := range v.strangers {
		r.violation(kindStrangerTopic, s)
	}
	orders := slices.Sorted(maps.Keys(v.trails)) // UUIDv7: oldest first, and the same lines every call
	for _, id := range orders {
		t := v.trails[id]
		for i, ids := range t.ids {
			if len(ids) > 1 {
				r.violation(kindTwice, fmt.Sprintf("order %s: %s %d times (eventIds %s)", id, tracked[i], len(ids), strings.Join(ids, ", ")))
			}
		}
		has := func(e string) bool { return len(t.ids[trackedIndex[e]]) > 0 }
		at := func(e string) int64 { return t.first[trackedIndex[e]] }
		for _, rule := range precedes {
			first, then := rule[0], rule[1]
			switch {
			case !has(then):
			case !has(first):
				r.violation(kindOutOfOrder, fmt.Sprintf("order %s: %s without %s before it", id, then, first))
			case at(first) > at(then):
				r.violation(kindOutOfOrder, fmt.Sprintf("order %s: %s (offset %d) before %s (offset %d)", id, then, at(then), first, at(first)))
			}
		}
		for _, pair := range excludes {
			if has(pair[0]) && has(pair[1]) {
				r.violation(kindOutOfOrder, fmt.Sprintf("order %s: both %s and %s", id, pair[0], pair[1]))
			}
		}
	}
}

// checkKafkaDeadLetters: every record of a dlq.* topic is an expected
// poison, dead-lettered by a service that consumes the poison's topic.
func checkKafkaDeadLetters(r *reporter, v *kafkaView, poison poisonIndex) {
	r.count("dead letters", len(v.dead))
	for _, d := range v.dead {
		svc := strings.TrimPrefix(d.topic, "dlq.")
		if i := poison.find(d.origin, d.value); i >= 0 && slices.Contains(consumersOf[d.origin], svc) {
			continue
		}
		from := "no x-dlq-topic header"
		if d.origin != "" {
			from = fmt.Sprintf("failed in %s: %s", d.origin, d.cause)
			if len(from) > 120 {
				from = from[:120] + "…"
			}
		}
		r.violation(kindStrangerDLQ, fmt.Sprintf("%s %d:%d: no expected poison (%s): %s", d.topic, d.partition, d.offset, from, preview(d.value)))
	}
}

// checkLag: every group caught up with the high watermarks of its topics.
func checkLag(r *reporter, v *kafkaView) {
	var total int64
	groups := slices.Sorted(maps.Keys(v.lag))
	for _, g := range groups {
		for _, n := range v.lag[g] {
			total += n
		}
		r.pending(kindLag, fmt.Sprintf("consumer group %s behind: %s", g, joinSorted(v.lag[g])))
	}
	r.count("consumer lag", int(total))
}

// checkQueues: the work and retry queues empty; every parked message an
// expected poison.
func checkQueues(r *reporter, v *queueView, poison poisonIndex) {
	queued := 0
	names := slices.Sorted(maps.Keys(v.ready))
	for _, q := range names {
		if n := v.ready[q]; n > 0 {
			queued += n
			r.pending(kindLag, fmt.Sprintf("queue %s: %d messages", q, n))
		}
	}
	r.count("queued messages", queued)
	r.count("dead letters", len(v.messages))
	for _, m := range v.messages {
		if poison.find("", m.body) >= 0 {
			continue
		}
		r.violation(kindStrangerDLQ, fmt.Sprintf("%s: message %q no poison explains (%s): %s", v.dead, m.messageID, m.cause, preview(m.body)))
	}
}

// checkPoisonArrived: each poison in every dead-letter destination it must
// reach: dlq.<service> of each service consuming its topic, or the email
// dead queue.
func checkPoisonArrived(r *reporter, kv *kafkaView, qv *queueView, poison poisonIndex) {
	seen := map[int]map[string]bool{} // poison → destinations holding it
	mark := func(i int, dest string) {
		if seen[i] == nil {
			seen[i] = map[string]bool{}
		}
		seen[i][dest] = true
	}
	for _, d := range kv.dead {
		if i := poison.find(d.origin, d.value); i >= 0 {
			mark(i, d.topic)
		}
	}
	for _, m := range qv.messages {
		if i := poison.find("", m.body); i >= 0 {
			mark(i, qv.dead)
		}
	}
	for i, p := range poison.list {
		if poison.find(p.Topic, p.Value) != i {
			continue // the same poison twice: judged once
		}
		var want []string
		switch svcs, ok := consumersOf[p.Topic]; {
		case p.Topic == "":
			want = []string{qv.dead}
		case !ok:
			r.violation(kindPoison, fmt.Sprintf("%s: no service consumes topic %q, so no dead-letter topic can hold it", poison.describe(i), p.Topic))
			continue
		default:
			for _, s := range svcs {
				want = append(want, "dlq."+s)
			}
		}
		var missing []string
		for _, dest := range want {
			if !seen[i][dest] {
				missing = append(missing, dest)
			}
		}
		if len(missing) > 0 {
			r.pending(kindPoison, fmt.Sprintf("%s not yet in %s", poison.describe(i), strings.Join(missing, ", ")))
		}
	}
}
