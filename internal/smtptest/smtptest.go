// Package smtptest is an in-process SMTP server (emersion/go-smtp's) for
// tests, benchmarks and the chaos tool: it keeps every message it accepted and answers as a
// test's Rule says, e.g. 451 for a while, or 550.
package smtptest

import (
	"bytes"
	"io"
	"net"
	"net/mail"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// Message is one accepted message.
type Message struct {
	From   string
	To     []string
	Data   []byte
	Header mail.Header
}

// Rule decides the answer to a message's DATA: nil accepts it; an
// *smtp.SMTPError refuses it with that code. seen counts earlier DATA
// attempts for the same Message-ID (0 the first time).
type Rule func(to []string, header mail.Header, seen int) *smtp.SMTPError

// Server is a running SMTP server.
type Server struct {
	Addr string

	mu       sync.Mutex
	rule     Rule
	accepted []Message
	attempts map[string]int // by Message-ID
	discard  bool           // count only (benchmarks)
	count    int
}

// Start runs a server on a free local port until t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, stop, err := Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s
}

// Serve runs a server on addr ("127.0.0.1:0" picks a free port) until stop
// is called, for programs (the chaos tool) rather than tests.
func Serve(addr string) (s *Server, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	s = &Server{Addr: ln.Addr().String(), attempts: map[string]int{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.MaxMessageBytes = 1 << 20
	go func() { _ = srv.Serve(ln) }()
	return s, func() { _ = srv.Close() }, nil
}

// SetRule sets how the server answers from now on.
func (s *Server) SetRule(r Rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rule = r
}

// Discard makes the server count accepted messages without keeping them.
func (s *Server) Discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discard = true
}

// Messages returns the accepted messages in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.accepted...)
}

// Count is how many messages were accepted.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Attempts is how many DATA commands came for messageID, accepted or not.
func (s *Server) Attempts(messageID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[messageID]
}

type session struct {
	s    *Server
	from string
	to   []string
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "unparsable message"}
	}
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	id := m.Header.Get("Message-ID")
	seen := s.attempts[id]
	s.attempts[id]++
	if s.rule != nil {
		if e := s.rule(ss.to, m.Header, seen); e != nil {
			return e
		}
	}
	s.count++
	if !s.discard {
		s.accepted = append(s.accepted, Message{From: ss.from, To: ss.to, Data: data, Header: m.Header})
	}
	return nil
}
