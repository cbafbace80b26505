package email

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/rabbit"
)

// mailer hands a finished message to its destination. An error wrapping
// rabbit.ErrPermanent will never succeed (SMTP 5xx); any other may.
type mailer interface {
	send(ctx context.Context, from, to string, msg []byte) error
}

// smtpMailer sends over SMTP to addr, keeping up to size connections open
// between messages (one per message in flight at most).
type smtpMailer struct {
	addr string
	idle chan pooled
}

// pooled is an idle connection and since when it idles.
type pooled struct {
	c     *smtp.Client
	since time.Time
}

func newSMTPMailer(addr string, size int) *smtpMailer {
	return &smtpMailer{addr: addr, idle: make(chan pooled, size)}
}

// Timeouts of one SMTP exchange.
const (
	smtpDialTimeout    = 5 * time.Second
	smtpCommandTimeout = 10 * time.Second
	smtpDataTimeout    = 30 * time.Second
	// smtpIdleCheck: a connection idle longer is checked (NOOP) before
	// use; servers close idle sessions (421, or just the socket).
	smtpIdleCheck = 5 * time.Second
)

// send sends msg once. A failure is never retried here: once DATA began
// the server may have accepted the message, and only the retry path (with
// the task's claim) may send it again.
func (m *smtpMailer) send(ctx context.Context, from, to string, msg []byte) error {
	c, err := m.client()
	if err != nil {
		return fmt.Errorf("smtp %s: %w", m.addr, err) // refused, timed out: transient
	}
	if err := c.SendMail(from, []string{to}, bytes.NewReader(msg)); err != nil {
		_ = c.Close() // its state is unknown: never reused
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			return fmt.Errorf("smtp %s: %w: %w", m.addr, err, rabbit.ErrPermanent)
		}
		return fmt.Errorf("smtp %s: %w", m.addr, err)
	}
	select {
	case m.idle <- pooled{c, time.Now()}:
	default:
		_ = c.Quit()
	}
	return nil
}

// client returns an idle connection that still answers, or dials one.
func (m *smtpMailer) client() (*smtp.Client, error) {
	for {
		select {
		case p := <-m.idle:
			if time.Since(p.since) < smtpIdleCheck || p.c.Noop() == nil {
				return p.c, nil
			}
			_ = p.c.Close() // the server dropped it
			continue
		default:
		}
		c, _, err := m.dial()
		return c, err
	}
}

func (m *smtpMailer) dial() (*smtp.Client, bool, error) {
	conn, err := net.DialTimeout("tcp", m.addr, smtpDialTimeout)
	if err != nil {
		return nil, false, err
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout, c.SubmissionTimeout = smtpCommandTimeout, smtpDataTimeout
	if err := c.Hello("orderflow.local"); err != nil {
		_ = c.Close()
		return nil, false, err
	}
	return c, false, nil
}

// close closes the idle connections.
func (m *smtpMailer) close() {
	for {
		select {
		case p := <-m.idle:
			_ = p.c.Quit()
		default:
			return
		}
	}
}

// dirMailer writes each message to dir as <Message-ID's task id>.eml, for
// running without an SMTP server. Writing the same task again replaces the
// file: one file per task, whatever is redelivered.
type dirMailer struct{ dir string }

func (d dirMailer) send(_ context.Context, _, _ string, msg []byte) error {
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	id := messageIDOf(msg)
	tmp, err := os.CreateTemp(d.dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(msg); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(d.dir, id+".eml"))
}

// messageIDOf reads the task id back from a message built by buildMessage.
func messageIDOf(msg []byte) string {
	const p = "Message-ID: <"
	i := bytes.Index(msg, []byte(p))
	if i < 0 {
		return fmt.Sprint(time.Now().UnixNano())
	}
	rest := msg[i+len(p):]
	j := bytes.IndexByte(rest, '@')
	if j < 0 {
		return fmt.Sprint(time.Now().UnixNano())
	}
	return string(rest[:j])
}

// safeCorrelationID is id when it is a valid correlation id, else empty:
// the header comes from the message, which anyone who can publish to the
// exchange writes, and must not smuggle in header lines.
func safeCorrelationID(id string) string {
	if correlation.ValidID(id) {
		return id
	}
	return ""
}

// buildMessage is t as a MIME message: multipart/alternative with the text
// and HTML parts, quoted-printable; Message-ID from the task id, so a
// message sent twice (see the package doc) carries the same id, and
// X-Correlation-ID the order's correlation id.
func buildMessage(from string, t task, correlationID string, now time.Time) ([]byte, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, part := range []struct{ ctype, content string }{
		{"text/plain; charset=utf-8", t.Text},
		{"text/html; charset=utf-8", t.HTML},
	} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(part.content)); err != nil {
			return nil, err
		}
		if err := qp.Close(); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	var msg bytes.Buffer
	header := [][2]string{
		{"From", from},
		{"To", t.To},
		{"Subject", mime.QEncoding.Encode("utf-8", t.Subject)},
		{"Date", now.Format(time.RFC1123Z)},
		{"Message-ID", "<" + t.TaskID.String() + "@orderflow.local>"},
		{"X-Correlation-ID", safeCorrelationID(correlationID)},
		{"X-Orderflow-Order", t.OrderID.String()},
		{"MIME-Version", "1.0"},
		{"Content-Type", "multipart/alternative; boundary=" + mw.Boundary()},
	}
	for _, h := range header {
		fmt.Fprintf(&msg, "%s: %s\r\n", h[0], h[1])
	}
	msg.WriteString("\r\n")
	msg.Write(body.Bytes())
	return msg.Bytes(), nil
}
