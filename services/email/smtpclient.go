package email

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// smtpClient is one SMTP connection speaking the few commands the mailer
// needs. When the server offers PIPELINING (RFC 2920), a message's MAIL,
// RCPT and DATA go in one write and their replies are read together: two
// round trips per message instead of four (go-smtp's client waits for each
// reply), which on this two-core machine was a fifth of the worker's CPU.
// Every error leaves the connection in an unknown state: the caller closes
// it.
type smtpClient struct {
	conn       *smtpConn
	text       *textproto.Conn
	pipelining bool // the server offers PIPELINING
	utf8       bool // and SMTPUTF8
}

// dialSMTP connects to addr and greets it; ctx bounds both.
func dialSMTP(ctx context.Context, addr string) (*smtpClient, error) {
	d := net.Dialer{Timeout: smtpDialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := &smtpConn{Conn: nc}
	c := &smtpClient{conn: conn, text: textproto.NewConn(conn)}
	unbind := conn.bind(ctx)
	err = c.hello()
	if !unbind() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = c.close()
		return nil, err
	}
	return c, nil
}

// hello reads the greeting and says EHLO (HELO to a server that refuses
// it), noting the extensions the client uses.
func (c *smtpClient) hello() error {
	c.deadline(smtpCommandTimeout)
	if _, err := c.reply(220); err != nil {
		return err
	}
	ext, err := c.cmd(250, "EHLO orderflow.local")
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		_, err = c.cmd(250, "HELO orderflow.local")
		return err
	}
	if err != nil {
		return err
	}
	for _, line := range strings.Split(ext, "\n")[1:] {
		name, _, _ := strings.Cut(line, " ")
		switch strings.ToUpper(name) {
		case "PIPELINING":
			c.pipelining = true
		case "SMTPUTF8":
			c.utf8 = true
		}
	}
	return nil
}

// send sends one message from the envelope sender to one recipient; msg
// has CRLF line ends. An error from the server is an *smtp.SMTPError.
func (c *smtpClient) send(from, to string, msg []byte) error {
	mailCmd := "MAIL FROM:<" + from + ">"
	if c.utf8 && !isASCII(from+to) {
		mailCmd += " SMTPUTF8"
	}
	cmds := []struct {
		line string
		code int
	}{{mailCmd, 250}, {"RCPT TO:<" + to + ">", 250}, {"DATA", 354}}
	c.deadline(smtpCommandTimeout)
	if c.pipelining {
		for _, cmd := range cmds {
			c.text.W.WriteString(cmd.line)
			c.text.W.WriteString("\r\n")
		}
		if err := c.text.W.Flush(); err != nil {
			return err
		}
		// Every reply is read, the first failure reported: after a
		// refused MAIL the server refuses RCPT and DATA too.
		var first error
		for _, cmd := range cmds {
			if _, err := c.reply(cmd.code); err != nil && first == nil {
				first = err
			}
		}
		if first != nil {
			return first
		}
	} else {
		for _, cmd := range cmds {
			if _, err := c.cmd(cmd.code, "%s", cmd.line); err != nil {
				return err
			}
		}
	}
	c.deadline(smtpDataTimeout)
	w := c.text.DotWriter()
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil { // the final dot, flushed
		return err
	}
	_, err := c.reply(250)
	return err
}

// noop checks that the server still answers.
func (c *smtpClient) noop() error {
	_, err := c.cmd(250, "NOOP")
	return err
}

// quit says QUIT and closes the connection.
func (c *smtpClient) quit() {
	_, _ = c.cmd(221, "QUIT")
	_ = c.close()
}

func (c *smtpClient) close() error { return c.text.Close() }

// cmd sends one command line and reads its reply.
func (c *smtpClient) cmd(code int, format string, args ...any) (string, error) {
	c.deadline(smtpCommandTimeout)
	if err := c.text.PrintfLine(format, args...); err != nil {
		return "", err
	}
	return c.reply(code)
}

// reply reads a reply, which must have code; a reply with another code is
// an *smtp.SMTPError.
func (c *smtpClient) reply(code int) (string, error) {
	_, msg, err := c.text.ReadResponse(code)
	var te *textproto.Error
	if errors.As(err, &te) {
		return msg, &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	}
	if err != nil {
		return msg, fmt.Errorf("smtp: %w", err)
	}
	return msg, nil
}

// deadline bounds the exchange that follows by d (and by the context
// bound to the connection, see smtpConn).
func (c *smtpClient) deadline(d time.Duration) { _ = c.conn.SetDeadline(time.Now().Add(d)) }

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
