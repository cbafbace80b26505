package benchrun

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/internal/chaos"
	"github.com/orderflow/orderflow/internal/devstack"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
)

// The benchmark stack's names and ports: its own databases, broker,
// email queues and ports, so it runs beside make run and make chaos.
const (
	databasePrefix = "orderflow_bench_"
	queuePrefix    = "bench."
	brokerAddr     = "127.0.0.1:29092"
	firstHTTPPort  = 28080 // orders; payments 28081, ... in devstack.Services order
)

// stack is the system under benchmark: cmd/orderflow (every service in
// one process, as make run) and its broker, cmd/broker, as a process of
// its own on its own port (cmd/orderflow's embedded broker always takes
// 127.0.0.1:9092, the port of a make run beside it).
type stack struct {
	dir        string
	pgURL      string
	urls       map[string]string // service → base URL
	databases  map[string]string // service → database URL
	broker, sy *chaos.Process
	// queuePrefix is the prefix of the email queues the stack declared:
	// queuePrefix, or "" when cmd/orderflow left EMAIL_QUEUE_PREFIX out.
	queuePrefix string
}

func newStack(dir, pgURL string) (*stack, error) {
	s := &stack{dir: dir, pgURL: pgURL, urls: map[string]string{}, databases: map[string]string{}}
	for i, name := range devstack.Services() {
		s.urls[name] = "http://127.0.0.1:" + strconv.Itoa(firstHTTPPort+i)
		u, err := postgres.DatabaseURL(pgURL, databasePrefix+name)
		if err != nil {
			return nil, err
		}
		s.databases[name] = u
	}
	return s, nil
}

// reset drops the stack's databases and the broker's data, so a run
// starts from nothing.
func (s *stack) reset(ctx context.Context) error {
	for _, name := range devstack.Services() {
		if err := postgres.DropDatabase(ctx, s.pgURL, databasePrefix+name); err != nil {
			return fmt.Errorf("drop %s%s: %w", databasePrefix, name, err)
		}
	}
	return os.RemoveAll(filepath.Join(s.dir, "kafka"))
}

// env is cmd/orderflow's environment, added to benchrun's own (so
// POSTGRES_MAX_CONNS and the like set for make bench reach the stack).
func (s *stack) env(amqpURL, smtpAddr string) []string {
	env := []string{
		"POSTGRES_URL=" + s.pgURL,
		"DATABASE_PREFIX=" + databasePrefix,
		"KAFKA_BROKERS=" + brokerAddr,
		"AMQP_URL=" + amqpURL,
		"EMAIL_QUEUE_PREFIX=" + queuePrefix,
		"SMTP_ADDR=" + smtpAddr,
		// Short enough that an order completes within the run, as in
		// BenchmarkChoreography.
		"WAREHOUSE_SHIP_DELAY=1s",
		"LOYALTY_AWARD_DELAY=2s",
		"LOG_LEVEL=warn",
		"LOG_FORMAT=json",
	}
	for i, name := range devstack.Services() {
		env = append(env, service.AddrVar(name)+"=127.0.0.1:"+strconv.Itoa(firstHTTPPort+i))
	}
	return env
}

// start runs the broker, then cmd/orderflow, and waits until every
// service answers /readyz.
func (s *stack) start(ctx context.Context, amqpURL, smtpAddr string) error {
	// An email worker already on the unprefixed queue is another stack's:
	// if cmd/orderflow declares unprefixed queues too, the two would
	// share the emails.
	othersBefore, _, err := queueConsumers(amqpURL, "email.send")
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	bin := filepath.Join(s.dir, "bin")
	s.broker, err = chaos.StartProcess("broker", filepath.Join(bin, "broker"), []string{
		"BROKER_ADDR=" + brokerAddr, "BROKER_DATA_DIR=" + filepath.Join(s.dir, "kafka"),
	}, filepath.Join(s.dir, "broker.log"))
	if err != nil {
		return err
	}
	s.sy, err = chaos.StartProcess("orderflow", filepath.Join(bin, "orderflow"), s.env(amqpURL, smtpAddr),
		filepath.Join(s.dir, "orderflow.log"))
	if err != nil {
		return err
	}
	for _, name := range devstack.Services() {
		if err := chaos.WaitReady(ctx, s.urls[name], 90*time.Second); err != nil {
			return fmt.Errorf("%s: %w (see %s)", name, err, filepath.Join(s.dir, "orderflow.log"))
		}
	}
	if _, ok, err := queueConsumers(amqpURL, queuePrefix+"email.send"); err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	} else if ok {
		s.queuePrefix = queuePrefix
	} else if othersBefore > 0 {
		return errors.New("cmd/orderflow declared the unprefixed email queues, which another stack's email worker " +
			"consumes (make run?): the two would share the emails; stop it and run again")
	}
	return nil
}

// stop ends cmd/orderflow, so its last offsets and cursors are written,
// then the broker.
func (s *stack) stop() {
	if s.sy != nil {
		s.sy.Stop()
	}
	if s.broker != nil {
		s.broker.Stop()
	}
}

// running reports whether both processes are still up.
func (s *stack) running() bool { return s.sy.Running() && s.broker.Running() }

// queueConsumers is how many consumers queue has; ok is false when it
// does not exist.
func queueConsumers(amqpURL, queue string) (n int, ok bool, err error) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return 0, false, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, false, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	var aerr *amqp.Error
	if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return q.Consumers, true, nil
}
