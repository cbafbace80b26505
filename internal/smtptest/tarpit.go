package smtptest

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tarpit is a server that accepts connections and then stalls them, as a
// tarpitting or wedged SMTP server does. Silent (delay 0), it answers
// nothing at all; slow, it speaks SMTP, accepting everything, but sends
// each line of its answers delay after it was due.
type Tarpit struct {
	Addr string

	delay    time.Duration
	accepted atomic.Int32
	answered atomic.Int32
	stop     chan struct{}
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

// StartTarpit runs a tarpit on a free local port until t ends.
func StartTarpit(t testing.TB, delay time.Duration) *Tarpit {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &Tarpit{Addr: ln.Addr().String(), delay: delay, stop: make(chan struct{})}
	tp.wg.Add(1)
	go func() {
		defer tp.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tp.accepted.Add(1)
			tp.mu.Lock()
			tp.conns = append(tp.conns, c)
			tp.mu.Unlock()
			tp.wg.Add(1)
			go func() {
				defer tp.wg.Done()
				defer c.Close()
				tp.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		close(tp.stop)
		tp.mu.Lock()
		for _, c := range tp.conns {
			_ = c.Close()
		}
		tp.mu.Unlock()
		tp.wg.Wait()
	})
	return tp
}

// Accepted is how many connections the tarpit accepted.
func (tp *Tarpit) Accepted() int { return int(tp.accepted.Load()) }

// Answered is how many lines the tarpit answered, on all connections.
func (tp *Tarpit) Answered() int { return int(tp.answered.Load()) }

func (tp *Tarpit) serve(c net.Conn) {
	if tp.delay == 0 {
		_, _ = io.Copy(io.Discard, c) // until the client or the test closes it
		return
	}
	answer := func(line string) bool {
		select {
		case <-tp.stop:
			return false
		case <-time.After(tp.delay):
		}
		if _, err := io.WriteString(c, line+"\r\n"); err != nil {
			return false
		}
		tp.answered.Add(1)
		return true
	}
	if !answer("220 tarpit ESMTP") {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.TrimSpace(line))
		verb, _, _ = strings.Cut(verb, " ")
		switch verb {
		case "QUIT":
			answer("221 bye")
			return
		case "DATA":
			if !answer("354 go ahead") {
				return
			}
			for line != ".\r\n" {
				if line, err = r.ReadString('\n'); err != nil {
					return
				}
			}
		}
		if !answer("250 ok") {
			return
		}
	}
}
