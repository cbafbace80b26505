package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

// replayGroup remembers, per dlq.* topic, how far `dlq replay` got, so a
// second replay sends only what was dead-lettered since.
const replayGroup = "orderflowctl-dlq-replay"

// deadLetter is one record of a dlq.* topic or message of email.send.dead.
type deadLetter struct {
	where    string // dlq.payments 0:12, or the dead queue's name
	id       string // the event's or task's id
	event    string // the event name, or the message type
	origin   string // where it failed: topic partition:offset, or the queue
	attempts string
	err      string
	headers  map[string]string
	value    []byte
}

// kafkaDeadLetters reads every record of topic from the start (or from
// from, when given) to its end as it is now, and the end offsets.
func kafkaDeadLetters(ctx context.Context, cl *kgo.Client, topic string, from map[int32]int64) ([]*kgo.Record, map[int32]int64, error) {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: end offsets: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: start offsets: %w", topic, err)
	}
	want := map[int32]int64{} // partition → end still to reach
	begin := map[int32]kgo.Offset{}
	endAt := map[int32]int64{}
	var listErr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			listErr = o.Err
			return
		}
		endAt[o.Partition] = o.Offset
		at := int64(0)
		if s, ok := starts.Lookup(topic, o.Partition); ok {
			at = s.Offset
		}
		if f, ok := from[o.Partition]; ok && f > at {
			at = f
		}
		if at < o.Offset {
			want[o.Partition] = o.Offset
			begin[o.Partition] = kgo.NewOffset().At(at)
		}
	})
	if listErr != nil {
		return nil, nil, fmt.Errorf("%s: %w", topic, listErr)
	}
	if len(want) == 0 {
		return nil, endAt, nil
	}
	rd, err := kgo.NewClient(append(slices.Clone(cl.Opts()), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: begin}))...)
	if err != nil {
		return nil, nil, err
	}
	defer rd.Close()
	var recs []*kgo.Record
	for len(want) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", topic, err)
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return nil, nil, fmt.Errorf("%s: %w", topic, errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset < end {
				recs = append(recs, r)
				if r.Offset+1 >= end {
					delete(want, r.Partition)
				}
			}
		})
	}
	slices.SortFunc(recs, func(a, b *kgo.Record) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	return recs, endAt, nil
}

func recordDeadLetter(r *kgo.Record) deadLetter {
	hs := map[string]string{}
	for _, h := range r.Headers {
		hs[h.Key] = string(h.Value)
	}
	var env struct {
		Event   string `json:"event"`
		EventID string `json:"eventId"`
	}
	_ = json.Unmarshal(r.Value, &env) // a record that is not JSON shows without them
	return deadLetter{
		where: fmt.Sprintf("%s %d:%d", r.Topic, r.Partition, r.Offset),
		id:    env.EventID, event: env.Event,
		origin:   fmt.Sprintf("%s %s:%s", hs["x-dlq-topic"], hs["x-dlq-partition"], hs["x-dlq-offset"]),
		attempts: hs["x-dlq-attempts"], err: hs["x-dlq-error"], headers: hs, value: r.Value,
	}
}

// queueDeadLetters reads the parked email tasks without taking them: every
// message is fetched unacked and goes back when the channel closes.
func queueDeadLetters(url string, topo rabbit.Topology) ([]deadLetter, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(topo.DeadQueue(), true, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", topo.DeadQueue(), err)
	}
	var out []deadLetter
	for range q.Messages { // those there now, not those parked meanwhile
		m, ok, err := ch.Get(topo.DeadQueue(), false)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		out = append(out, messageDeadLetter(topo.DeadQueue(), m))
	}
	return out, nil
}

func messageDeadLetter(queue string, m amqp.Delivery) deadLetter {
	hs := map[string]string{}
	for k, v := range m.Headers {
		hs[k] = fmt.Sprint(v)
	}
	return deadLetter{
		where: queue, id: m.MessageId, event: m.Type, origin: queue,
		attempts: hs[rabbit.HeaderAttempts], err: hs[rabbit.HeaderError], headers: hs, value: m.Body,
	}
}

// printDeadLetters writes a table, one dead letter a line.
func printDeadLetters(w io.Writer, dls []deadLetter) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WHERE\tID\tEVENT\tFAILED IN\tATTEMPTS\tERROR")
	for _, d := range dls {
		e := strings.ReplaceAll(d.err, "\n", " ")
		if len(e) > 100 {
			e = e[:100] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.where, d.id, d.event, d.origin, d.attempts, e)
	}
	_ = tw.Flush()
}

// showDeadLetter writes one dead letter whole: headers, then the value
// (indented when it is JSON).
func showDeadLetter(w io.Writer, d deadLetter) {
	fmt.Fprintf(w, "%s\n", d.where)
	keys := make([]string, 0, len(d.headers))
	for k := range d.headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", k, d.headers[k])
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, d.value, "", "  ") == nil {
		fmt.Fprintf(w, "%s\n", pretty.Bytes())
	} else {
		fmt.Fprintf(w, "%q\n", d.value)
	}
}

// replayKafka re-produces topic's records dead-lettered since the last
// replay to the topics they failed in (x-dlq-topic), with their key and
// headers but not the x-dlq-* ones, then remembers how far it got. The
// consumers' inboxes make a record handled before a no-op. It returns how
// many it replayed.
func replayKafka(ctx context.Context, cl *kgo.Client, topic string) (int, error) {
	adm := kadm.NewClient(cl)
	done, err := adm.FetchOffsetsForTopics(ctx, replayGroup, topic)
	if errors.Is(err, kerr.GroupIDNotFound) {
		done, err = nil, nil // never replayed anything
	}
	if err != nil {
		return 0, fmt.Errorf("replay progress: %w", err)
	}
	from := map[int32]int64{}
	done.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.Topic == topic && o.At >= 0 {
			from[o.Partition] = o.At
		}
	})
	recs, ends, err := kafkaDeadLetters(ctx, cl, topic, from)
	if err != nil {
		return 0, err
	}
	for _, r := range recs {
		origin := ""
		var hs []kgo.RecordHeader
		for _, h := range r.Headers {
			switch {
			case h.Key == "x-dlq-topic":
				origin = string(h.Value)
			case strings.HasPrefix(h.Key, "x-dlq-"):
			default:
				hs = append(hs, h)
			}
		}
		if origin == "" {
			return 0, fmt.Errorf("%s %d:%d has no x-dlq-topic header: not a dead letter", r.Topic, r.Partition, r.Offset)
		}
		out := &kgo.Record{Topic: origin, Key: r.Key, Value: r.Value, Headers: hs}
		if err := cl.ProduceSync(ctx, out).FirstErr(); err != nil {
			return 0, fmt.Errorf("replay %s %d:%d to %s: %w", r.Topic, r.Partition, r.Offset, origin, err)
		}
	}
	offsets := kadm.Offsets{}
	for p, end := range ends {
		offsets.Add(kadm.Offset{Topic: topic, Partition: p, At: end, LeaderEpoch: -1})
	}
	if err := adm.CommitAllOffsets(ctx, replayGroup, offsets); err != nil {
		return len(recs), fmt.Errorf("replayed %d, but could not remember it (a next replay sends them again, harmlessly): %w", len(recs), err)
	}
	return len(recs), nil
}

// replayQueue moves every parked email task back to the work queue with
// its attempts reset, each acked off the dead queue only after the broker
// confirmed its copy. It returns how many it moved.
func replayQueue(url string, topo rabbit.Topology) (int, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return 0, fmt.Errorf("rabbitmq: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return 0, err
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 1)) // one copy in flight
	q, err := ch.QueueDeclarePassive(topo.DeadQueue(), true, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", topo.DeadQueue(), err)
	}
	n := 0
	for range q.Messages {
		m, ok, err := ch.Get(topo.DeadQueue(), false)
		if err != nil {
			return n, err
		}
		if !ok {
			break
		}
		hs := amqp.Table{}
		for k, v := range m.Headers {
			if k != rabbit.HeaderAttempts && k != rabbit.HeaderError && !strings.HasPrefix(k, "x-death") && !strings.HasPrefix(k, "x-first-death") {
				hs[k] = v
			}
		}
		dc, err := ch.PublishWithDeferredConfirm(topo.Exchange, topo.RoutingKey, true, false, amqp.Publishing{
			Headers: hs, ContentType: m.ContentType, DeliveryMode: amqp.Persistent, CorrelationId: m.CorrelationId,
			MessageId: m.MessageId, Timestamp: m.Timestamp, Type: m.Type, Body: m.Body,
		})
		if err != nil {
			return n, err
		}
		if !dc.Wait() {
			return n, fmt.Errorf("replay %s: the broker did not confirm it", m.MessageId)
		}
		select {
		case r := <-returns: // it comes before the confirm
			return n, fmt.Errorf("replay %s: unroutable (%d %s): is the email service's topology declared?", m.MessageId, r.ReplyCode, r.ReplyText)
		default:
		}
		if err := m.Ack(false); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// parseAt reads "partition:offset".
func parseAt(s string) (int32, int64, error) {
	ps, os, ok := strings.Cut(s, ":")
	p, err1 := strconv.ParseInt(ps, 10, 32)
	o, err2 := strconv.ParseInt(os, 10, 64)
	if !ok || err1 != nil || err2 != nil || p < 0 || o < 0 {
		return 0, 0, errors.New("want partition:offset, e.g. 0:12")
	}
	return int32(p), o, nil
}
