package email

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// readMbox splits an mboxrd file into its messages, unquoted, and the
// senders of their "From " lines.
func readMbox(t *testing.T, path string) (msgs []string, senders []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && !bytes.HasSuffix(data, []byte("\n\n")) {
		t.Fatalf("mbox does not end with a blank line: %q", data[max(0, len(data)-40):])
	}
	var cur []string
	flush := func() {
		if cur != nil {
			msgs = append(msgs, strings.Join(cur[:len(cur)-1], "\n")+"\n") // the blank line after each
		}
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if strings.HasPrefix(line, "From ") {
			flush()
			cur = []string{}
			senders = append(senders, strings.Fields(line)[1])
			continue
		}
		if cur == nil {
			t.Fatalf("mbox starts with %q, not a From line", line)
		}
		if isFromLine([]byte(line)) {
			line = line[1:]
		}
		cur = append(cur, line)
	}
	flush()
	return msgs, senders
}

// The mbox takes concurrent sends whole, quotes body lines that would
// read as a "From " line (and unquotes back to the message), appends after
// a restart, and ends a message a crash cut short before appending.
func TestMbox(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, mboxName)
	// The last message cut mid-line, as a machine dying mid-write leaves it.
	if err := os.WriteFile(path, []byte("From cut@example.com Thu Jan  1 00:00:00 1970\nSubject: cut\n\nhalf a li"), 0o644); err != nil {
		t.Fatal(err)
	}
	message := func(i int) string {
		return fmt.Sprintf("Subject: %d\r\nMessage-ID: <%d@orderflow.local>\r\n\r\nFrom the top\r\n>From quoted\r\n>>From more\r\nFromage\r\n", i, i)
	}
	want := []string{"Subject: cut\n\nhalf a li\n"}
	send := func(from int, n int) {
		m, err := openMbox(dir)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := from; i < from+n; i++ {
			wg.Go(func() {
				if err := m.send(context.Background(), "orders@orderflow.local", "c@example.com", []byte(message(i))); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if err := m.close(); err != nil {
			t.Fatal(err)
		}
	}
	send(0, 50)
	send(50, 1) // a restart
	got, senders := readMbox(t, path)
	if len(got) != 52 {
		t.Fatalf("%d messages in the mbox, want 52", len(got))
	}
	if got[0] != want[0] {
		t.Errorf("the cut message reads %q, want %q", got[0], want[0])
	}
	seen := map[string]bool{}
	for i, g := range got[1:] {
		if senders[i+1] != "orders@orderflow.local" {
			t.Errorf("From line of message %d names %q", i+1, senders[i+1])
		}
		seen[g] = true
	}
	for i := range 51 {
		if m := strings.ReplaceAll(message(i), "\r\n", "\n"); !seen[m] {
			t.Errorf("message %d missing or changed; want %q", i, m)
		}
	}
	raw, _ := os.ReadFile(path)
	for _, q := range []string{"\n>From the top\n", "\n>>From quoted\n", "\n>>>From more\n", "\nFromage\n"} {
		if !bytes.Contains(raw, []byte(q)) {
			t.Errorf("mbox lacks the quoted line %q", q)
		}
	}
}

// Without SMTP_ADDR the service appends its emails to MailDir's mbox and
// records them sent.
func TestMboxDefault(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := setup(t, func(c *Config) { c.SMTPAddr, c.MailDir = "", dir })
	id, to := newID(), "ada-"+newID()[:8]+"@example.com"
	b.in.Produce(t, placed(id, to))
	b.in.Produce(t, captured(id, to))
	es := b.emails(t, id, func(es []emailJSON) bool { return statuses(es) == "confirmation:sent" })
	msgs, _ := readMbox(t, filepath.Join(dir, mboxName))
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Message-ID: <"+es[0].TaskID.String()+"@orderflow.local>\n") ||
		!strings.Contains(msgs[0], "To: "+to+"\n") {
		t.Fatalf("mbox holds %q, want the one confirmation to %s", msgs, to)
	}
	if n := len(b.sentTo(to)); n != 0 {
		t.Errorf("%d messages went to the SMTP server", n)
	}
}
