package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/pkg/events/contract"
)

// scenario is one fault: run injects it, holds it, and undoes it, while
// the load goes on; the invariants are checked after it.
type scenario struct {
	name  string
	what  string   // one line for the table
	needs []string // commands it runs; without one it is skipped
	run   func(ctx context.Context, r *runner) error
}

// scenarios in the order they run. hold is how long a fault lasts.
func scenarios(hold time.Duration) []scenario {
	return []scenario{
		{name: "baseline", what: "no fault", run: func(ctx context.Context, r *runner) error {
			return sleep(ctx, hold)
		}},
		{name: "kill-services", what: "a burst, then kill -9 of each service in turn, restarted 2 s later", run: killEachService},
		{name: "postgres-stop", what: "a burst, then PostgreSQL stopped 10 s and started",
			needs: []string{"pg_ctlcluster", "pg_isready"}, run: stopPostgres},
		{name: "postgres-terminate", what: "a burst, then every backend of the stack's databases killed, three times",
			run: terminateBackends},
		{name: "broker-restart", what: "a burst, then the broker killed (-9), restarted from its data dir 3 s later", run: restartBroker},
		{name: "broker-faults", what: "broker fails Produce, Fetch and OffsetCommit for " + hold.String(),
			run: func(ctx context.Context, r *runner) error { return brokerFaults(ctx, hold) }},
		{name: "rabbitmq-close", what: "the email service's RabbitMQ connections force-closed, twice",
			needs: []string{"rabbitmqctl"}, run: closeRabbitConnections},
		{name: "rabbitmq-stop", what: "rabbitmqctl stop_app for " + hold.String() + ", then start_app",
			needs: []string{"rabbitmqctl"}, run: func(ctx context.Context, r *runner) error { return stopRabbit(ctx, hold) }},
		{name: "smtp-4xx", what: "the SMTP server answers 451 for 30 s", run: smtpRefuses},
		{name: "poison", what: "poison in every topic and in the email queue", run: injectPoison},
		{name: "rebalance", what: "second payments and warehouse instances started, then stopped", run: rebalance},
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func killEachService(ctx context.Context, r *runner) error {
	if err := r.burst(ctx); err != nil {
		return err
	}
	for _, name := range services {
		p := r.stack.services[name]
		p.kill()
		r.logf("  killed %s", name)
		if err := sleep(ctx, 2*time.Second); err != nil {
			return err
		}
		if err := p.start(); err != nil {
			return err
		}
		if err := waitReady(ctx, url(name), 90*time.Second); err != nil {
			return fmt.Errorf("%s after restart: %w\n%s", name, err, logTail(p.log, 5))
		}
	}
	return nil
}

// postgresCluster is the local cluster's version directory, as
// pg_ctlcluster wants it.
func postgresCluster() (string, error) {
	entries, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(entries) == 0 {
		return "", errors.New("no cluster under /etc/postgresql")
	}
	return entries[0].Name(), nil
}

func stopPostgres(ctx context.Context, r *runner) error {
	version, err := postgresCluster()
	if err != nil {
		return err
	}
	// A backlog in hand, as in production when a restart comes: at the
	// steady rate every record is handled within milliseconds, and an
	// outage would find nothing in flight to mishandle.
	if err := r.burst(ctx); err != nil {
		return err
	}
	if out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop", "-m", "fast").CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctlcluster stop: %v: %s", err, out)
	}
	r.logf("  PostgreSQL stopped")
	if err := sleep(ctx, 10*time.Second); err != nil {
		return err
	}
	return startPostgres()
}

// startPostgres starts the local cluster unless it runs, and waits for it.
func startPostgres() error {
	if exec.Command("pg_isready", "-q", "-h", "127.0.0.1").Run() == nil {
		return nil
	}
	version, err := postgresCluster()
	if err != nil {
		return err
	}
	if out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start").CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctlcluster start: %v: %s", err, out)
	}
	for range 60 {
		if exec.Command("pg_isready", "-q", "-h", "127.0.0.1").Run() == nil {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return errors.New("PostgreSQL did not come back within 30 s")
}

func terminateBackends(ctx context.Context, r *runner) error {
	if err := r.burst(ctx); err != nil {
		return err
	}
	for i := range 3 {
		if i > 0 {
			if err := sleep(ctx, 2*time.Second); err != nil {
				return err
			}
		}
		conn, err := pgx.Connect(ctx, r.stack.pgURL)
		if err != nil {
			return err
		}
		var n int
		err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname LIKE $1 AND pid <> pg_backend_pid()`, databasePrefix+"%").Scan(&n)
		conn.Close(context.Background())
		if err != nil {
			return err
		}
		r.logf("  terminated %d backends", n)
	}
	return nil
}

func restartBroker(ctx context.Context, r *runner) error {
	if err := r.burst(ctx); err != nil {
		return err
	}
	r.stack.broker.kill()
	r.logf("  broker killed")
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}
	if err := r.stack.broker.start(); err != nil {
		return err
	}
	return waitPort(ctx, brokerAddr, 30*time.Second)
}

func brokerFaults(ctx context.Context, hold time.Duration) error {
	if err := control(ctx, http.MethodPost, "/faults?requests=Produce,Fetch,OffsetCommit"); err != nil {
		return err
	}
	err := sleep(ctx, hold)
	// Removed even when ctx ended: the broker must not stay faulty.
	if rerr := control(context.WithoutCancel(ctx), http.MethodDelete, "/faults"); rerr != nil {
		return rerr
	}
	return err
}

// control calls the broker's fault endpoint (kafka.FaultHandler).
func control(ctx context.Context, method, path string) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+controlAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("broker control: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("broker control %s %s: %s", method, path, resp.Status)
	}
	return nil
}

func closeRabbitConnections(ctx context.Context, r *runner) error {
	for i := range 2 {
		if i > 0 {
			if err := sleep(ctx, 3*time.Second); err != nil {
				return err
			}
		}
		n, err := closeConnections(queuePrefix)
		if err != nil {
			return err
		}
		r.logf("  closed %d RabbitMQ connections", n)
	}
	return nil
}

// closeConnections makes RabbitMQ close the connections whose name starts
// with prefix (the email service names its connection after its queue
// prefix), sparing everyone else's.
func closeConnections(prefix string) (int, error) {
	out, err := exec.Command("rabbitmqctl", "list_connections", "-q", "pid", "client_properties").Output()
	if err != nil {
		return 0, fmt.Errorf("rabbitmqctl list_connections: %w", err)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		pid, props, ok := strings.Cut(line, "\t")
		if !ok || !strings.Contains(props, `{"connection_name","`+prefix) {
			continue
		}
		if exec.Command("rabbitmqctl", "close_connection", pid, "chaos: closed by force").Run() == nil {
			n++
		}
	}
	return n, nil
}

func stopRabbit(ctx context.Context, hold time.Duration) error {
	if out, err := exec.Command("rabbitmqctl", "stop_app").CombinedOutput(); err != nil {
		return fmt.Errorf("rabbitmqctl stop_app: %v: %s", err, out)
	}
	err := sleep(ctx, hold)
	if serr := startRabbit(); serr != nil {
		return serr
	}
	return err
}

// startRabbit starts the RabbitMQ application (idempotent) and waits for
// its AMQP port.
func startRabbit() error {
	if out, err := exec.Command("rabbitmqctl", "start_app").CombinedOutput(); err != nil {
		return fmt.Errorf("rabbitmqctl start_app: %v: %s", err, out)
	}
	return waitPort(context.Background(), "127.0.0.1:5672", 60*time.Second)
}

func smtpRefuses(ctx context.Context, r *runner) error {
	r.smtp.SetRule(func([]string, mail.Header, int) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "chaos: try again later"}
	})
	defer r.smtp.SetRule(nil)
	return sleep(ctx, 30*time.Second)
}

// injectPoison produces records no consumer can handle to every topic and
// publishes a malformed task to the email exchange, and adds each to the
// expectation: each must end in the dead-letter destinations.
func injectPoison(ctx context.Context, r *runner) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr))
	if err != nil {
		return err
	}
	defer cl.Close()
	var recs []*kgo.Record
	for _, topic := range []string{contract.TopicOrders, contract.TopicPayments, contract.TopicWarehouse, contract.TopicLoyalty} {
		key := uuid.NewString()
		for _, v := range []string{
			"chaos poison: not JSON " + key,
			fmt.Sprintf(`{"event":"OrderPlaced","version":1,"orderId":%q,"note":"chaos poison: no eventId"}`, key),
		} {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(v)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce poison: %w", err)
	}
	for _, rec := range recs {
		r.expect.Poison = append(r.expect.Poison, Poison{Topic: rec.Topic, Value: rec.Value})
	}
	body := []byte("chaos poison: not a task " + uuid.NewString())
	if err := publishAMQP(ctx, r.amqpURL, queuePrefix+"email", "send", body); err != nil {
		return err
	}
	r.expect.Poison = append(r.expect.Poison, Poison{Value: body})
	r.logf("  %d poison records, 1 poison task", len(recs))
	return sleep(ctx, 2*time.Second)
}

// publishAMQP publishes body to exchange/key with a publisher confirm.
func publishAMQP(ctx context.Context, amqpURL, exchange, key string, body []byte) error {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent, MessageId: "chaos-poison", Type: "SendEmail", Body: body,
	})
	if err != nil {
		return err
	}
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		return fmt.Errorf("poison task not confirmed: %v", err)
	}
	return nil
}

// rebalance starts second instances of payments and warehouse in their
// groups, lets them take partitions, and stops them again.
func rebalance(ctx context.Context, r *runner) error {
	var extras []*proc
	defer func() {
		for _, p := range extras {
			p.stop()
		}
		r.stack.extras = nil
	}()
	for i, name := range []string{"payments", "warehouse"} {
		p := r.stack.serviceProc(name, name+"-2", extraHTTPPort+1+i, r.settings)
		if err := p.start(); err != nil {
			return err
		}
		extras = append(extras, p)
		r.stack.extras = extras
		if err := waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d", extraHTTPPort+1+i), 90*time.Second); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	r.logf("  second payments and warehouse running")
	return sleep(ctx, 8*time.Second)
}

// waitPort waits until addr accepts TCP connections.
func waitPort(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s not listening after %s", addr, timeout)
}

// ready is nil when base/readyz answers 200.
func ready(ctx context.Context, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s", errNotReady, resp.Status)
	}
	return nil
}
