package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/smtptest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/email"
)

// BenchmarkEmailThroughput: tasks from the email service's outbox to the
// SMTP server's acceptance, through RabbitMQ (publisher confirms, the
// worker at prefetch 20, the sent record before each ack), with an
// in-process SMTP sink. 20,000 tasks are committed to the outbox at once;
// emails/s counts from the first acceptance to the last (the relay's first
// poll, up to a second, is left out), total-emails/s from the commit.
// Target ≥ 2,000 emails/s.
func BenchmarkEmailThroughput(b *testing.B) {
	const tasks = 20_000
	for range b.N {
		broker := kafkatest.Start(b)
		srv := smtptest.Start(b)
		srv.Discard()
		dbURL := pgtest.NewDatabase(b)
		u, err := url.Parse(dbURL)
		if err != nil {
			b.Fatal(err)
		}
		cfg := email.Config{
			Config:      servicetest.Config(b, broker),
			SMTPAddr:    srv.Addr,
			QueuePrefix: amqptest.Prefix(b),
		}
		cfg.Database = strings.TrimPrefix(u.Path, "/")
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
		b.ResetTimer()
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		var first time.Time
		testenv.WaitFor(b, 5*time.Minute, "every email accepted", func() bool {
			if first.IsZero() && srv.Count() > 0 {
				first = time.Now()
			}
			return srv.Count() >= tasks
		})
		done := time.Now()
		b.StopTimer()
		b.ReportMetric(float64(tasks)/done.Sub(first).Seconds(), "emails/s")
		b.ReportMetric(float64(tasks)/done.Sub(committed).Seconds(), "total-emails/s")
		var sent int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM emails WHERE status = 'sent'").Scan(&sent); err != nil || sent != tasks {
			b.Errorf("%d tasks recorded sent (%v), want %d", sent, err, tasks)
		}
	}
}
