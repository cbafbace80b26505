package email

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// mboxName is the mailbox file under Config.MailDir.
const mboxName = "orderflow.mbox"

// mboxMailer appends every message to one mbox file (mboxrd: a "From "
// line before each message, body lines matching ^>*From  quoted with one
// more '>', LF line ends, a blank line after each), for running without an
// SMTP server: `mutt -f .data/mail/orderflow.mbox` reads it, grep searches
// it. Each message is one write(2), under a mutex, to a file opened for
// appending: concurrent sends never interleave, a restart appends, and a
// message whose write returned is in the file even if the process dies
// next (it is not fsynced: a machine crash can lose the last ones). It
// costs a fraction of an SMTP exchange, where the .eml file per message it
// replaces (a temp file, a write, a rename) cost more than SMTP.
//
// A redelivery in the window the package doc names appends the message
// again, with the same Message-ID.
type mboxMailer struct {
	mu  sync.Mutex
	f   *os.File
	buf []byte // the message being written, reused
}

// openMbox opens (creating) dir/orderflow.mbox for appending. A file whose
// last message was cut short (the machine died mid-write) gets its closing
// blank line first, so the next "From " line starts a message of its own.
func openMbox(dir string) (*mboxMailer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, mboxName), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := endLastMessage(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("mbox %s: %w", f.Name(), err)
	}
	return &mboxMailer{f: f}, nil
}

// endLastMessage appends what a complete last message ends with ("\n\n")
// and f's tail lacks.
func endLastMessage(f *os.File) error {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	tail := make([]byte, min(st.Size(), 2))
	if _, err := f.ReadAt(tail, st.Size()-int64(len(tail))); err != nil && err != io.EOF {
		return err
	}
	var missing string
	switch {
	case bytes.HasSuffix(tail, []byte("\n\n")):
		return nil
	case bytes.HasSuffix(tail, []byte("\n")):
		missing = "\n"
	default:
		missing = "\n\n"
	}
	_, err = f.WriteString(missing)
	return err
}

func (m *mboxMailer) send(_ context.Context, from, _ string, msg []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.buf = appendMboxrd(m.buf[:0], from, msg, time.Now())
	if _, err := m.f.Write(m.buf); err != nil {
		return fmt.Errorf("mbox %s: %w", m.f.Name(), err)
	}
	return nil
}

func (m *mboxMailer) close() error { return m.f.Close() }

// appendMboxrd appends msg (CRLF or LF lines) to b as one mboxrd entry
// from sender, received at now.
func appendMboxrd(b []byte, sender string, msg []byte, now time.Time) []byte {
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	b = append(b, "From "...)
	b = append(b, sender...)
	b = append(b, ' ')
	b = now.UTC().AppendFormat(b, "Mon Jan _2 15:04:05 2006")
	b = append(b, '\n')
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if isFromLine(line) {
			b = append(b, '>')
		}
		b = append(b, line...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}

// isFromLine reports whether line matches ^>*From , the lines mboxrd
// quotes.
func isFromLine(line []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From "))
}
