// Command orderflowctl is the operator's tool. This version has:
//
//	orderflowctl lag
//
// which prints one table of every backlog in the system: each service's
// outbox (unpublished rows, oldest age), each consumer group's lag per
// topic, the email queues' ready messages, and the dead letters (records
// in every dlq.* topic, messages in email.send.dead); and
//
//	orderflowctl outbox replay --service S --since T
//
// which moves the service's relay back to the first outbox row created at or
// after T, so it publishes everything from there again (same eventIds,
// original order) for a consumer that joined late. T is RFC 3339 or a
// duration ago ("2h", "7d"). Rows older than OUTBOX_RETENTION are gone; and
//
//	orderflowctl load --rate R --duration D --out FILE
//
// which places orders at R a second, open loop, in a mix of outcomes, and
// writes each accepted order's id with its outcome to FILE (see load.go and
// internal/loadgen); and
//
//	orderflowctl trace <orderId> [--json]
//
// which prints the order's whole story as one timeline, read from the five
// databases and Kafka: outbox rows written and published, the Kafka records
// (topic, partition, offset), each consumer's handling (its inbox), timers
// scheduled and fired, dead letters, email tasks queued, sent or parked,
// with the delay at each hop; then the expected steps that have not
// happened (see trace.go); and
//
//	orderflowctl new service NAME --port N --consumes a,b [--emits]
//
// which writes a working service and wires it everywhere (scaffold.go).
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/events/rabbit"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
	"github.com/orderflow/orderflow/services/email"
)

const usage = `usage:
  orderflowctl lag
      every backlog: outboxes, consumer lag, email queues, dead letters
  orderflowctl dlq list
      every dead letter: records of the dlq.* topics, tasks in email.send.dead
  orderflowctl dlq show dlq.<service> P:O
      one record whole (partition P, offset O)
  orderflowctl dlq replay dlq.<service> | email.send.dead
      dead letters back where they failed (Kafka: those since the last replay)
  orderflowctl outbox replay --service S --since T
      T: RFC 3339 time (2026-11-28T10:00:00Z) or a duration ago (30m, 2h, 7d)
  orderflowctl outbox rebase --service S
      after a restore or move tripped the relay's cursor guard (see README)
  orderflowctl load [--rate R] [--duration D] [--mix M] [--out FILE] [--json] [--allow-errors]
                    [--url U] [--warehouse-url U] [--fraud-limit-cents N] [--seed N]
                    [--idempotency] [--max-in-flight N] [--timeout D]
      orders at R/s (default 100) for D (10s), open loop; M default
      happy=80,declined=5,flaky=5,fraud=3,out-of-stock=2,cancelled=5;
      FILE gets "<orderId>\t<outcome>" per accepted order; exits non-zero on
      a 5xx or a request without an answer unless --allow-errors
  orderflowctl trace <orderId> [--json]
      the order's timeline across the five databases and Kafka (outbox,
      records, consumers, timers, dead letters, emails) with the delay at
      each hop, then the steps that have not happened yet
  orderflowctl new service NAME --port N --consumes topic[,topic] [--emits]
      a new service consuming those topics (an append-only log of their
      events per order, GET /NAME/{orderId}), registered and wired into the
      dev stack, compose, prometheus.yml and sqlc.yaml; run at the repo root
  orderflowctl db bootstrap
      every service's database and its role, owning it and nothing else, made
      as POSTGRES_ADMIN_URL's superuser (default POSTGRES_URL); idempotent.
      Passwords from <SERVICE>_POSTGRES_PASSWORD
  orderflowctl kafka bootstrap
      on a real cluster: every topic, each service's SCRAM user
      (<SERVICE>_KAFKA_PASSWORD) and its ACLs, as KAFKA_SASL_USER (a superuser)
  orderflowctl rabbit bootstrap
      the email service's RabbitMQ user and vhost from AMQP_URL, with rights on
      its own exchanges and queues only, through rabbitmqctl (RABBITMQCTL)
environment: POSTGRES_URL (default ` + postgres.DefaultURL + `),
  KAFKA_BROKERS (default ` + service.DefaultBroker + `), AMQP_URL and
  EMAIL_RETRY_DELAYS (as the email service reads them); trace and db:
  DATABASE_PREFIX (default orderflow_); load: ORDERS_URL
  (default http://localhost:8080), WAREHOUSE_URL (http://localhost:8082),
  FRAUD_LIMIT_CENTS (1000000)`

// services whose databases have an outbox.
var services = registry.Names()

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "orderflowctl:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, out io.Writer, now time.Time) error {
	switch {
	case len(args) == 1 && args[0] == "lag":
		return lag(ctx, out)
	case len(args) >= 2 && args[0] == "dlq":
		return dlq(ctx, args[1:], out)
	case len(args) >= 2 && args[0] == "outbox" && args[1] == "replay":
		return outboxReplay(ctx, args[2:], out, now)
	case len(args) >= 2 && args[0] == "outbox" && args[1] == "rebase":
		return outboxRebase(ctx, args[2:], out)
	case len(args) >= 1 && args[0] == "load":
		return load(ctx, args[1:], out, os.Stderr)
	case len(args) >= 2 && args[0] == "new" && args[1] == "service":
		return newService(args[2:], ".", out)
	case len(args) >= 2 && args[0] == "kafka" && args[1] == "bootstrap":
		return kafkaBootstrap(ctx, args[2:], out)
	case len(args) >= 2 && args[0] == "rabbit" && args[1] == "bootstrap":
		return rabbitBootstrap(ctx, args[2:], out)
	case len(args) >= 2 && args[0] == "db" && args[1] == "bootstrap":
		return dbBootstrap(ctx, args[2:], out)
	case len(args) >= 1 && args[0] == "trace":
		return traceCmd(ctx, args[1:], out, now)
	}
	return errors.New(usage)
}

// lag prints every backlog (see gatherLag), failing when a source did not
// answer.
func lag(ctx context.Context, out io.Writer) error {
	cfg, err := email.ConfigFromEnv()
	if err != nil {
		return err
	}
	s := sources{
		databases: map[string]string{},
		brokers:   cfg.Brokers,
		amqpURL:   cfg.AMQPURL,
		topology:  rabbit.EmailTopology(cfg.RetryDelays),
	}
	for _, name := range services {
		if s.databases[name], err = postgres.DatabaseURL(cfg.PostgresURL, databaseName(name)); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rows := gatherLag(ctx, s)
	printLag(out, rows)
	for _, r := range rows {
		if r.err != nil {
			return errors.New("some sources did not answer (see above)")
		}
	}
	return nil
}

// dlq lists, shows or replays dead letters.
func dlq(ctx context.Context, args []string, out io.Writer) error {
	cfg, err := email.ConfigFromEnv()
	if err != nil {
		return err
	}
	topo := rabbit.EmailTopology(cfg.RetryDelays)
	cl, err := newKafkaClient(cfg.Brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	switch {
	case len(args) == 1 && args[0] == "list":
		return dlqList(ctx, cl, cfg.AMQPURL, topo, out)
	case len(args) == 3 && args[0] == "show" && strings.HasPrefix(args[1], "dlq."):
		return dlqShow(ctx, cl, args[1], args[2], out)
	case len(args) == 2 && args[0] == "replay" && args[1] == topo.DeadQueue():
		n, err := replayQueue(cfg.AMQPURL, topo)
		fmt.Fprintf(out, "%s: %d tasks back in %s, attempts reset\n", args[1], n, topo.Queue)
		return err
	case len(args) == 2 && args[0] == "replay" && strings.HasPrefix(args[1], "dlq."):
		n, err := replayKafka(ctx, cl, args[1])
		fmt.Fprintf(out, "%s: %d records replayed to the topics they failed in\n", args[1], n)
		return err
	}
	return errors.New(usage)
}

// dlqShow prints the record of topic at "partition:offset" whole.
func dlqShow(ctx context.Context, cl *kgo.Client, topic, at string, out io.Writer) error {
	p, o, err := parseAt(at)
	if err != nil {
		return err
	}
	recs, _, err := kafkaDeadLetters(ctx, cl, topic, map[int32]int64{p: o})
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Partition == p && r.Offset == o {
			showDeadLetter(out, recordDeadLetter(r))
			return nil
		}
	}
	return fmt.Errorf("%s holds no record at %s", topic, at)
}

// dlqList prints every dead letter of every dlq.* topic and of the email
// dead queue.
func dlqList(ctx context.Context, cl *kgo.Client, amqpURL string, topo rabbit.Topology, out io.Writer) error {
	topics, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	var dls []deadLetter
	for _, t := range topics.Names() {
		if !strings.HasPrefix(t, "dlq.") {
			continue
		}
		recs, _, err := kafkaDeadLetters(ctx, cl, t, nil)
		if err != nil {
			return err
		}
		for _, r := range recs {
			dls = append(dls, recordDeadLetter(r))
		}
	}
	queued, qerr := queueDeadLetters(amqpURL, topo)
	printDeadLetters(out, append(dls, queued...))
	return qerr
}

func outboxReplay(ctx context.Context, args []string, out io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("outbox replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	svc := fs.String("service", "", "service whose outbox to replay")
	sinceArg := fs.String("since", "", "start of the range")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w\n%s", err, usage)
	}
	if !known(*svc) {
		return fmt.Errorf("--service must be one of %s", strings.Join(services, ", "))
	}
	since, err := parseTime(*sinceArg, now)
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if since.After(now) {
		return errors.New("--since is in the future")
	}
	pool, err := servicePool(ctx, *svc)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := outbox.Replay(ctx, pool, since)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: relay moved back to %s; %d outbox rows will be published again\n",
		*svc, since.Format(time.RFC3339), n)
	return nil
}

func known(s string) bool {
	for _, v := range services {
		if v == s {
			return true
		}
	}
	return false
}

// parseTime takes RFC 3339 or a duration before now, with "d" for days.
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("required")
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor a duration (30m, 2h, 7d)", s)
	}
	return now.Add(-d), nil
}

// databaseName is a service's database as the services name it: the
// DATABASE_PREFIX (default "orderflow_") and the service.
func databaseName(svc string) string {
	return cmp.Or(os.Getenv("DATABASE_PREFIX"), "orderflow_") + svc
}
