package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/smtptest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/email"
)

// BenchmarkEmailThroughput: tasks from the email service's outbox to the
// SMTP server's acceptance, through RabbitMQ (publisher confirms, the
// worker at the default prefetch, the sent record before each ack), with an
// in-process SMTP sink. 20,000 tasks are committed to the outbox at once;
// emails/s counts from the first acceptance to the last (the relay's first
// poll, up to a second, is left out), total-emails/s from the commit.
// Target ≥ 3,000 emails/s.
func BenchmarkEmailThroughput(b *testing.B) {
	for range b.N {
		srv := smtptest.Start(b)
		srv.Discard()
		emailThroughput(b, func(c *email.Config) { c.SMTPAddr = srv.Addr }, srv.Count)
	}
}

// BenchmarkEmailThroughputMbox is BenchmarkEmailThroughput with the local
// default, SMTP_ADDR unset: the worker appends to the mbox file instead of
// talking SMTP. It is to be no slower than the SMTP sink.
func BenchmarkEmailThroughputMbox(b *testing.B) {
	for range b.N {
		dir := b.TempDir()
		mbox := &mboxCounter{path: filepath.Join(dir, "orderflow.mbox")}
		emailThroughput(b, func(c *email.Config) { c.MailDir = dir }, mbox.count)
	}
}

// emailThroughput runs one measurement: the service configured by mod,
// 20,000 tasks committed to its outbox, and delivered the count of
// messages that reached the mail destination.
func emailThroughput(b *testing.B, mod func(*email.Config), delivered func() int) {
	const tasks = 20_000
	b.StopTimer()
	broker := kafkatest.Start(b)
	cfg := email.Config{
		Config:      servicetest.Config(b, broker), // its own database and role
		QueuePrefix: amqptest.Prefix(b),
	}
	mod(&cfg)
	testenv.Start(b, func(ctx context.Context) error { return email.Run(ctx, cfg, quiet) })
	servicetest.WaitReady(b, "http://"+cfg.HTTPAddr)
	pool := servicetest.Pool(b, cfg.Config)

	emails, outbox := make([][]any, tasks), make([][]any, tasks)
	now := time.Now()
	for i := range tasks {
		taskID, orderID := uuid.New(), uuid.New()
		to := fmt.Sprintf("c%d@example.com", i)
		body, err := json.Marshal(map[string]any{
			"taskId": taskID, "orderId": orderID, "kind": "confirmation", "to": to,
			"subject": "Your order is confirmed", "text": "Thank you!", "html": "<p>Thank you!</p>",
		})
		if err != nil {
			b.Fatal(err)
		}
		emails[i] = []any{taskID, orderID, "confirmation", to, "Your order is confirmed"}
		outbox[i] = []any{taskID, cfg.QueuePrefix + "email", orderID.String(), "SendEmail", body, now}
	}
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"emails"}, []string{"task_id", "order_id", "kind", "to_addr", "subject"}, pgx.CopyFromRows(emails)); err != nil {
		b.Fatal(err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"outbox"}, []string{"event_id", "topic", "key", "event_type", "payload", "occurred_at"}, pgx.CopyFromRows(outbox)); err != nil {
		b.Fatal(err)
	}
	before := readCPU()
	b.StartTimer()
	if err := tx.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	committed := time.Now()
	var first time.Time
	testenv.WaitFor(b, 5*time.Minute, "every email delivered", func() bool {
		n := delivered()
		if first.IsZero() && n > 0 {
			first = time.Now()
		}
		return n >= tasks
	})
	done := time.Now()
	b.StopTimer()
	after := readCPU()
	b.ReportMetric(float64(tasks)/done.Sub(first).Seconds(), "emails/s")
	b.ReportMetric(float64(tasks)/done.Sub(committed).Seconds(), "total-emails/s")
	var backends []int
	rows, err := pool.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
	if err == nil {
		backends, err = pgx.CollectRows(rows, pgx.RowTo[int])
	}
	if err != nil {
		b.Fatal(err)
	}
	perEmail := func(d time.Duration) float64 { return float64(d.Microseconds()) / tasks }
	b.ReportMetric(perEmail(after.self-before.self), "go-µs/email")
	b.ReportMetric(perEmail(after.of(backends)-before.of(backends)), "pg-µs/email")
	b.ReportMetric(perEmail(after.rabbit-before.rabbit), "rabbitmq-µs/email")
	var sent int
	testenv.WaitFor(b, 10*time.Second, "every task recorded sent", func() bool {
		err := pool.QueryRow(ctx, "SELECT count(*) FROM emails WHERE status = 'sent'").Scan(&sent)
		return err == nil && sent == tasks
	})
	if n := delivered(); n != tasks {
		b.Errorf("%d emails delivered, want %d", n, tasks)
	}
}

// mboxCounter counts the messages in an mbox file (its lines starting
// "From "), reading only what was appended since its last call.
type mboxCounter struct {
	path string
	off  int64
	tail []byte // the last bytes read, for a "From " line split between reads
	n    int
}

func (c *mboxCounter) count() int {
	f, err := os.Open(c.path)
	if err != nil {
		return c.n
	}
	defer f.Close()
	data, err := io.ReadAll(io.NewSectionReader(f, c.off, 1<<40))
	if err != nil || len(data) == 0 {
		return c.n
	}
	if c.off == 0 {
		c.tail = []byte("\n") // the first line starts like every other
	}
	c.off += int64(len(data))
	data = append(c.tail, data...)
	c.n += bytes.Count(data, []byte("\nFrom "))
	c.tail = append([]byte(nil), data[max(0, len(data)-5):]...)
	return c.n
}

// cpuTimes is CPU time used so far (user + system, from /proc; zero where
// it cannot be read): this process's, each PostgreSQL process's, and
// RabbitMQ's (beam.smp). Per email, they compare runs on a shared machine
// better than emails/s does: another test's load slows the rate but adds
// nothing to them (RabbitMQ's excepted, if another test uses it).
type cpuTimes struct {
	self, rabbit time.Duration
	pg           map[int]time.Duration // by pid
}

func readCPU() cpuTimes {
	c := cpuTimes{self: procCPU("self"), pg: map[int]time.Duration{}}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		switch comm, _ := os.ReadFile("/proc/" + d.Name() + "/comm"); strings.TrimSpace(string(comm)) {
		case "postgres":
			c.pg[pid] = procCPU(d.Name())
		case "beam.smp":
			c.rabbit += procCPU(d.Name())
		}
	}
	return c
}

// of sums the CPU time of the PostgreSQL backends pids.
func (c cpuTimes) of(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		sum += c.pg[pid]
	}
	return sum
}

// procCPU reads utime + stime of /proc/<pid>/stat, in clock ticks of 10 ms.
func procCPU(pid string) time.Duration {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(stat[i+1:])) // from field 3, the state
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
