package email

import (
	"context"
	"encoding/json"
	"errors"
	"net/mail"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/smtptest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

// A send in progress at shutdown to an SMTP server that stalls it (silent
// once connected, or answering each line seconds late) does not hold the
// stop: Run returns within the shutdown timeout (measured against a
// generous bound, the timeout plus 5 s; unbounded, the exchange would take
// 10 s silent, 18 s slow), the task is not recorded sent, and its message
// is back in the queue for the next run.
func TestShutdownCutsStalledSend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		delay time.Duration // between the tarpit's lines; 0: none ever
	}{
		{"silent", 0},
		{"slow", 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const shutdown = 2 * time.Second
			tarpit := smtptest.StartTarpit(t, tc.delay)
			b := setup(t, func(c *Config) { c.SMTPAddr, c.ShutdownTimeout = tarpit.Addr, shutdown })
			tk := task{TaskID: uuid.New(), OrderID: uuid.New(), Kind: kindConfirmation, To: "stuck@example.com",
				Subject: "Your order is confirmed", Text: "Thank you!", HTML: "<p>Thank you!</p>"}
			body, err := json.Marshal(tk)
			if err != nil {
				t.Fatal(err)
			}
			amqptest.Publish(t, b.topo.Exchange, b.topo.RoutingKey, amqp.Publishing{MessageId: tk.TaskID.String(), Body: body})
			testenv.WaitFor(t, 20*time.Second, "the send under way", func() bool {
				return tarpit.Accepted() > 0 && (tc.delay == 0 || tarpit.Answered() > 0)
			})

			began := time.Now()
			b.run.Halt(t)
			if took := time.Since(began); took > shutdown+5*time.Second {
				t.Errorf("Run took %s to stop with a send in progress, over the shutdown timeout (%s) + 5 s", took.Round(100*time.Millisecond), shutdown)
			}
			pool := servicetest.Pool(t, b.cfg.Config)
			var status string
			err = pool.QueryRow(context.Background(), "SELECT status FROM emails WHERE task_id = $1", tk.TaskID).Scan(&status)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				t.Fatal(err)
			}
			if status == "sent" {
				t.Error("the task cut at shutdown is recorded sent")
			}
			conn := amqptest.Conn(t, b.topo)
			testenv.WaitFor(t, 10*time.Second, "the task back in the queue", func() bool {
				n, err := conn.QueueDepth(context.Background(), b.topo.Queue)
				return err == nil && n == 1
			})
		})
	}
}

// The SMTP client against a server offering PIPELINING (smtptest's) and
// one that does not (a tarpit answering at once): the message arrives as
// built, a line starting with a dot included; a 550 is permanent, a 451
// is not, and the next send after either goes through.
func TestSMTPClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	msg := []byte("Subject: hi\r\nMessage-ID: <1@orderflow.local>\r\n\r\n.a line with a dot\r\n..two\r\nend\r\n")

	srv := smtptest.Start(t)
	srv.SetRule(func(to []string, _ mail.Header, _ int) *smtp.SMTPError {
		switch to[0] {
		case "gone@example.com":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
		case "busy@example.com":
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		}
		return nil
	})
	c, err := dialSMTP(ctx, srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if !c.pipelining {
		t.Error("smtptest's server offers PIPELINING; the client did not see it")
	}
	c.quit()
	m := newSMTPMailer(srv.Addr, 2, time.Second)
	defer m.close()
	for _, tc := range []struct {
		to        string
		permanent bool
		fails     bool
	}{
		{"ada@example.com", false, false},
		{"gone@example.com", true, true},
		{"ada@example.com", false, false},
		{"busy@example.com", false, true},
		{"ada@example.com", false, false},
	} {
		err := m.send(ctx, "orders@orderflow.local", tc.to, msg)
		if (err != nil) != tc.fails || errors.Is(err, rabbit.ErrPermanent) != tc.permanent {
			t.Errorf("send to %s: %v; want failure %v, permanent %v", tc.to, err, tc.fails, tc.permanent)
		}
	}
	got := srv.Messages()
	if len(got) != 3 {
		t.Fatalf("%d messages accepted, want 3", len(got))
	}
	for _, g := range got {
		if string(g.Data) != string(msg) || g.From != "orders@orderflow.local" {
			t.Errorf("accepted %q from %q, want %q", g.Data, g.From, msg)
		}
	}

	plain := smtptest.StartTarpit(t, time.Millisecond) // no extensions, answers each line
	c, err = dialSMTP(ctx, plain.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if c.pipelining {
		t.Error("the tarpit offers no PIPELINING; the client thinks it does")
	}
	if err := c.send("orders@orderflow.local", "ada@example.com", msg); err != nil {
		t.Errorf("send without pipelining: %v", err)
	}
	c.quit()
}
