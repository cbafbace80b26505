package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/rabbit"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// sources says where every backlog of the system lives.
type sources struct {
	databases map[string]string // service → its database URL
	brokers   []string
	kafkaOpts []kgo.Opt // added to the operator's client options (tests: the test broker's security)
	amqpURL   string
	topology  rabbit.Topology // the email service's queues
}

// backlog is one line of `orderflowctl lag`.
type backlog struct {
	kind   string // outbox, consumer, queue, dead letters
	name   string // what: a service, group and topic, queue or DLQ topic
	count  int64
	oldest time.Duration // outboxes only
	err    error         // the source did not answer
}

// gatherLag reads every backlog; a source that does not answer gives a
// line with its error instead of hiding the others.
func gatherLag(ctx context.Context, s sources) []backlog {
	var out []backlog
	services := make([]string, 0, len(s.databases))
	for name := range s.databases {
		services = append(services, name)
	}
	slices.Sort(services)
	for _, name := range services {
		out = append(out, outboxBacklog(ctx, name, s.databases[name]))
	}
	out = append(out, kafkaBacklogs(ctx, s.brokers, s.kafkaOpts, services)...)
	out = append(out, queueBacklogs(s.amqpURL, s.topology)...)
	return out
}

func outboxBacklog(ctx context.Context, service, dbURL string) backlog {
	b := backlog{kind: "outbox", name: service}
	pool, err := postgres.Connect(ctx, dbURL, 1)
	if err != nil {
		b.err = err
		return b
	}
	defer pool.Close()
	b.count, b.oldest, b.err = outbox.Pending(ctx, pool)
	return b
}

// kafkaBacklogs is each service's consumer lag per topic (records behind
// the high watermark from the group's committed offsets) and the records
// held in every dlq.* topic.
func kafkaBacklogs(ctx context.Context, brokers []string, opts []kgo.Opt, services []string) []backlog {
	cl, err := newKafkaClient(brokers, opts...)
	if err != nil {
		return []backlog{{kind: "consumer", name: strings.Join(brokers, ","), err: err}}
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var out []backlog
	groups := make([]string, len(services))
	for i, s := range services {
		groups[i] = "orderflow-" + s
	}
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		return []backlog{{kind: "consumer", name: strings.Join(brokers, ","), err: err}}
	}
	for _, g := range groups {
		l, ok := lags[g]
		switch {
		case !ok:
			continue
		case l.Error() != nil:
			out = append(out, backlog{kind: "consumer", name: g, err: l.Error()})
			continue
		case l.State == "Dead":
			continue // never joined: the service does not consume
		}
		for _, tl := range l.Lag.TotalByTopic().Sorted() {
			out = append(out, backlog{kind: "consumer", name: g + " " + tl.Topic, count: tl.Lag})
		}
	}
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return append(out, backlog{kind: "dead letters", name: "dlq.*", err: err})
	}
	var dlqs []string
	for _, t := range topics.Names() {
		if strings.HasPrefix(t, "dlq.") {
			dlqs = append(dlqs, t)
		}
	}
	if len(dlqs) == 0 {
		return out
	}
	starts, err := adm.ListStartOffsets(ctx, dlqs...)
	if err == nil {
		var ends kadm.ListedOffsets
		ends, err = adm.ListEndOffsets(ctx, dlqs...)
		if err == nil {
			for _, t := range dlqs {
				b := backlog{kind: "dead letters", name: t}
				ends.Each(func(o kadm.ListedOffset) {
					if o.Topic != t {
						return
					}
					if o.Err != nil {
						b.err = o.Err
						return
					}
					if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil {
						b.count += o.Offset - s.Offset
					}
				})
				out = append(out, b)
			}
			return out
		}
	}
	return append(out, backlog{kind: "dead letters", name: "dlq.*", err: err})
}

// queueBacklogs is the ready messages of each email queue, the parked
// ones last. It only looks (passive declares): an operator's tool must
// not create queues, or fail on settings it does not know.
func queueBacklogs(url string, topo rabbit.Topology) []backlog {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return []backlog{{kind: "queue", name: topo.Queue, err: err}}
	}
	defer conn.Close()
	var out []backlog
	for _, q := range topo.Queues() {
		kind := "queue"
		if q == topo.DeadQueue() {
			kind = "dead letters"
		}
		b := backlog{kind: kind, name: q}
		ch, err := conn.Channel()
		if err == nil {
			var info amqp.Queue
			info, err = ch.QueueDeclarePassive(q, true, false, false, false, nil)
			b.count = int64(info.Messages)
			_ = ch.Close()
		}
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			err = errors.New("no such queue (the email service has not started yet?)")
		}
		b.err = err
		out = append(out, b)
		if conn.IsClosed() {
			break
		}
	}
	return out
}

// printLag writes backlogs as a table.
func printLag(w io.Writer, rows []backlog) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKLOG\tWHERE\tCOUNT\tOLDEST")
	for _, r := range rows {
		switch {
		case r.err != nil:
			fmt.Fprintf(tw, "%s\t%s\t-\tunavailable: %v\n", r.kind, r.name, r.err)
		case r.kind == "outbox":
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.kind, r.name, r.count, r.oldest.Round(time.Millisecond))
		default:
			fmt.Fprintf(tw, "%s\t%s\t%d\t\n", r.kind, r.name, r.count)
		}
	}
	_ = tw.Flush()
}
