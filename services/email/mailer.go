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
	"sync"
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

// smtpMailer sends over SMTP to addr on at most size connections at once,
// kept open between messages: sends beyond size wait for a connection.
//
// A send honours its context: once the context is done (the worker's
// session ends, at shutdown), the exchange in progress has grace more to
// finish, then every read and write on its socket fails at once and the
// connection is closed. A tarpitting server (one that accepts and answers
// nothing, or a line every few seconds) cannot hold a shutdown beyond the
// service's shutdown timeout; the cut send wraps rabbit.ErrRequeue, so its
// message is left unacked and comes again, never recorded sent.
type smtpMailer struct {
	addr  string
	grace time.Duration
	slots chan struct{} // one per send in progress
	idle  chan pooled
}

// pooled is an idle connection and since when it idles.
type pooled struct {
	c     *smtpClient
	since time.Time
}

// newSMTPMailer returns a mailer to addr on up to size connections; grace
// is how long a send may go on once its context is done.
func newSMTPMailer(addr string, size int, grace time.Duration) *smtpMailer {
	return &smtpMailer{addr: addr, grace: grace, slots: make(chan struct{}, size), idle: make(chan pooled, size)}
}

// Timeouts of one SMTP exchange.
const (
	smtpDialTimeout    = 5 * time.Second
	smtpCommandTimeout = 10 * time.Second
	smtpDataTimeout    = 30 * time.Second
	// smtpIdleCheck: a connection idle longer is checked (NOOP) before
	// use; servers close idle sessions (421, or just the socket).
	smtpIdleCheck = 5 * time.Second
	// smtpQuitTimeout bounds the QUIT of a connection let go.
	smtpQuitTimeout = time.Second
)

// send sends msg once. A failure is never retried here: once DATA began
// the server may have accepted the message, and only the retry path (with
// the task's claim) may send it again.
func (m *smtpMailer) send(ctx context.Context, from, to string, msg []byte) error {
	select {
	case m.slots <- struct{}{}:
		defer func() { <-m.slots }()
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		return fmt.Errorf("smtp %s: not sent, the worker stops: %w", m.addr, rabbit.ErrRequeue)
	}
	sctx, stop := withGrace(ctx, m.grace)
	defer stop()
	p, err := m.client(sctx)
	if err != nil {
		if sctx.Err() != nil {
			return fmt.Errorf("smtp %s: not sent, cut as the worker stopped (%v): %w", m.addr, err, rabbit.ErrRequeue)
		}
		return fmt.Errorf("smtp %s: %w", m.addr, err) // refused, timed out: transient
	}
	unbind := p.c.conn.bind(sctx)
	err = p.c.send(from, to, msg)
	if !unbind() {
		_ = p.c.close() // cut: never reused
		if err != nil {
			return fmt.Errorf("smtp %s: send cut as the worker stopped, the server may have it (%v): %w", m.addr, err, rabbit.ErrRequeue)
		}
		return nil // it ended within the grace
	}
	if err != nil {
		_ = p.c.close() // its state is unknown: never reused
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			return fmt.Errorf("smtp %s: %w: %w", m.addr, err, rabbit.ErrPermanent)
		}
		return fmt.Errorf("smtp %s: %w", m.addr, err)
	}
	select {
	case m.idle <- pooled{p.c, time.Now()}:
	default:
		p.quit()
	}
	return nil
}

// withGrace is ctx with its deadline, cancelled grace after ctx is.
func withGrace(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	base, cancelDeadline := context.WithoutCancel(ctx), context.CancelFunc(func() {})
	if d, ok := ctx.Deadline(); ok {
		base, cancelDeadline = context.WithDeadline(base, d)
	}
	gctx, cancel := context.WithCancel(base)
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return gctx, func() { stop(); cancel(); cancelDeadline() }
}

// client returns an idle connection that still answers, or dials one;
// ctx bounds the check and the dial.
func (m *smtpMailer) client(ctx context.Context) (pooled, error) {
	for {
		select {
		case p := <-m.idle:
			if time.Since(p.since) < smtpIdleCheck {
				return p, nil
			}
			unbind := p.c.conn.bind(ctx)
			err := p.c.noop()
			if unbind() && err == nil {
				return p, nil
			}
			_ = p.c.close() // the server dropped it, or ctx ended
			continue
		default:
		}
		c, err := dialSMTP(ctx, m.addr)
		return pooled{c: c}, err
	}
}

// quit says QUIT, waiting at most smtpQuitTimeout, and closes.
func (p pooled) quit() {
	ctx, cancel := context.WithTimeout(context.Background(), smtpQuitTimeout)
	defer cancel()
	unbind := p.c.conn.bind(ctx)
	p.c.quit()
	unbind()
}

// close closes the idle connections.
func (m *smtpMailer) close() {
	for {
		select {
		case p := <-m.idle:
			p.quit()
		default:
			return
		}
	}
}

// smtpConn is an SMTP connection's socket whose deadlines a context bounds
// (bind). smtpClient sets a deadline before each command, so a deadline
// set on the socket from outside would not last: here every deadline the
// client asks for is capped by the bound context's, and once that context
// is done the deadline is in the past, failing the read or write in
// progress at once. (The client calls SetDeadline only.)
type smtpConn struct {
	net.Conn

	mu    sync.Mutex
	limit time.Time // from the bound context; zero: none
	asked time.Time // the client's
}

// SetDeadline sets the client's deadline, capped by the limit.
func (c *smtpConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked = t
	return c.apply()
}

func (c *smtpConn) apply() error {
	t := c.asked
	if !c.limit.IsZero() && (t.IsZero() || c.limit.Before(t)) {
		t = c.limit
	}
	return c.Conn.SetDeadline(t)
}

func (c *smtpConn) setLimit(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limit = t
	_ = c.apply()
}

// bind bounds the socket's reads and writes by ctx (its deadline, and at
// once when it is done) until unbind, which reports whether ctx was still
// going: if not, the exchange may have been cut and the connection is not
// to be used again.
func (c *smtpConn) bind(ctx context.Context) (unbind func() bool) {
	d, _ := ctx.Deadline()
	c.setLimit(d)
	stop := context.AfterFunc(ctx, func() { c.setLimit(time.Unix(1, 0)) })
	return func() bool {
		if !stop() {
			return false
		}
		c.setLimit(time.Time{})
		return true
	}
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
