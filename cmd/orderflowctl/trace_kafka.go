package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/pkg/events/contract"
)

// maxScan bounds the records read per partition: an order placed long ago
// on a busy system has a long partition after it.
const maxScan = 500_000

// eventTopics are the topics events are published on.
var eventTopics = []string{contract.TopicOrders, contract.TopicPayments, contract.TopicWarehouse, contract.TopicLoyalty}

// kafkaRecord is one of the order's records.
type kafkaRecord struct {
	topic      string
	partition  int32
	offset     int64
	at         time.Time // the producer's timestamp; a dead letter keeps its original's
	event      string
	eventID    string
	dlqOrigin  string // dead letters: topic[partition]@offset it failed at
	dlqError   string
	dlqAttempt string
}

// scan is the range of one partition read.
type scan struct {
	topic     string
	partition int32
	from, to  int64 // to: the end offset when read
	cut       bool  // stopped at maxScan
}

// keyPartition is the partition the relay's producer sends key to among n:
// it uses kgo.StickyKeyPartitioner(nil), Kafka's murmur2 of the key, and
// the consumers' dead-letter producer keys records the same way.
func keyPartition(key string, n int) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: []byte(key)}, n))
}

// readKafka reads the order's records: on each event topic and dlq.*
// topic, only the partition its key maps to, from the first record at or
// after since to the end as it is now; and where each service's consumer
// group has got to on those partitions.
func readKafka(ctx context.Context, brokers []string, f *facts, since time.Time) error {
	cl, err := newKafkaClient(brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics := append([]string{}, eventTopics...)
	for _, s := range services {
		topics = append(topics, "dlq."+s)
	}
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a broker that is not there is retried until the context ends
	details, err := adm.ListTopics(mctx, topics...)
	cancel()
	if err != nil {
		return fmt.Errorf("%w (is the stack running? KAFKA_BROKERS as the services have it?)", err)
	}
	parts := map[string]int32{}
	for _, t := range topics {
		if d, ok := details[t]; ok && d.Err == nil && len(d.Partitions) > 0 {
			parts[t] = keyPartition(f.orderID, len(d.Partitions))
		}
	}
	if len(parts) == 0 {
		return errors.New("none of the topics exists (has the stack ever run on this broker?)")
	}
	present := make([]string, 0, len(parts))
	for t := range parts {
		present = append(present, t)
	}
	starts, err := adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), present...)
	if err != nil {
		return fmt.Errorf("offsets at %s: %w", since.Format(time.RFC3339), err)
	}
	ends, err := adm.ListEndOffsets(ctx, present...)
	if err != nil {
		return fmt.Errorf("end offsets: %w", err)
	}
	for t, p := range parts {
		s, ok1 := starts.Lookup(t, p)
		e, ok2 := ends.Lookup(t, p)
		if !ok1 || !ok2 || s.Err != nil || e.Err != nil {
			return fmt.Errorf("%s[%d]: offsets not listed: %v", t, p, errors.Join(s.Err, e.Err))
		}
		f.scans = append(f.scans, scan{topic: t, partition: p, from: s.Offset, to: e.Offset})
	}
	if err := readPartitions(ctx, cl, f); err != nil {
		return err
	}
	f.kafkaRead = true
	return readCommitted(ctx, adm, parts, f)
}

// readPartitions reads the scans' ranges and keeps the order's records.
func readPartitions(ctx context.Context, cl *kgo.Client, f *facts) error {
	begin := map[string]map[int32]kgo.Offset{}
	left := map[string]int{} // topic → index in f.scans, while its range is not read
	for i, s := range f.scans {
		if s.from < s.to {
			begin[s.topic] = map[int32]kgo.Offset{s.partition: kgo.NewOffset().At(s.from)}
			left[s.topic] = i
		}
	}
	if len(left) == 0 {
		return nil
	}
	rd, err := kgo.NewClient(append(slices.Clone(cl.Opts()), kgo.ConsumePartitions(begin))...)
	if err != nil {
		return err
	}
	defer rd.Close()
	read := map[string]int{}
	for len(left) > 0 {
		// A partition whose last offsets hold no record (transaction
		// markers) would be waited on for ever: a quiet poll ends the read.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		fs := rd.PollFetches(pctx)
		quiet := pctx.Err() != nil
		cancel()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading the order's partitions: %w", err)
		}
		if quiet && fs.NumRecords() == 0 {
			for _, i := range left {
				f.scans[i].cut = true
			}
			return nil
		}
		if errs := fs.Errors(); len(errs) > 0 && !errors.Is(errs[0].Err, context.DeadlineExceeded) {
			return fmt.Errorf("%s[%d]: %w", errs[0].Topic, errs[0].Partition, errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			i, ok := left[r.Topic]
			if !ok {
				return
			}
			if string(r.Key) == f.orderID {
				f.keep(r)
			}
			read[r.Topic]++
			switch {
			case r.Offset+1 >= f.scans[i].to:
				delete(left, r.Topic)
			case read[r.Topic] >= maxScan:
				f.scans[i].cut, f.scans[i].to = true, r.Offset+1
				delete(left, r.Topic)
			}
		})
	}
	return nil
}

// keep adds one of the order's records to the facts.
func (f *facts) keep(r *kgo.Record) {
	var env contract.Envelope
	_ = json.Unmarshal(r.Value, &env) // a record that is not JSON shows without them
	k := kafkaRecord{topic: r.Topic, partition: r.Partition, offset: r.Offset, at: r.Timestamp, event: env.Event, eventID: env.EventID}
	for _, h := range r.Headers {
		switch h.Key {
		case "ce_id":
			if k.eventID == "" {
				k.eventID = string(h.Value)
			}
		case "ce_type":
			if k.event == "" {
				k.event = string(h.Value)
			}
		case "x-dlq-topic":
			k.dlqOrigin = string(h.Value) + k.dlqOrigin
		case "x-dlq-partition":
			k.dlqOrigin += "[" + string(h.Value) + "]"
		case "x-dlq-offset":
			k.dlqOrigin += "@" + string(h.Value)
		case "x-dlq-error":
			k.dlqError = string(h.Value)
		case "x-dlq-attempts":
			k.dlqAttempt = string(h.Value)
		}
	}
	if strings.HasPrefix(r.Topic, "dlq.") {
		f.dead = append(f.dead, k)
	} else {
		f.records = append(f.records, k)
	}
}

// readCommitted reads each service's group's committed offset on the
// order's partitions: it tells a consumer that has not got there yet from
// one that went past without handling.
func readCommitted(ctx context.Context, adm *kadm.Client, parts map[string]int32, f *facts) error {
	f.committed = map[string]map[string]int64{}
	for _, s := range services {
		offs, err := adm.FetchOffsets(ctx, "orderflow-"+s)
		if errors.Is(err, kerr.GroupIDNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("group orderflow-%s: %w", s, err)
		}
		for _, t := range eventTopics {
			p, ok := parts[t]
			if !ok {
				continue
			}
			if o, ok := offs.Lookup(t, p); ok && o.Err == nil && o.At >= 0 {
				if f.committed[s] == nil {
					f.committed[s] = map[string]int64{}
				}
				f.committed[s][t] = o.At
			}
		}
	}
	return nil
}
