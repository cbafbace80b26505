package email

import (
	"context"
	"net/mail"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/events/contract"
)

// The email service's database away for a few seconds while emails flow
// (connections refused, sessions killed): the worker's claims and records
// fail meanwhile, and none of that is the tasks' fault. Every email is
// sent once, on its first attempt, none is parked, and /readyz said why
// while it lasted.
func TestDatabaseOutageParksNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.smtp.SetRule(func([]string, mail.Header, int) *smtp.SMTPError {
		time.Sleep(5 * time.Millisecond) // keep the flow going past the outage's start
		return nil
	})
	const n = 300
	evs := make([]contract.Event, n)
	for i := range evs {
		id := newID()
		evs[i] = captured(id, "c-"+id[:8]+"@example.com")
	}
	go b.in.ProduceAll(t, evs...)
	testenv.WaitFor(t, 60*time.Second, "emails flowing", func() bool { return b.smtp.Count() >= 20 })

	dbURL := servicetest.DatabaseURL(t, b.cfg.Config)
	end := pgtest.Outage(t, dbURL)
	testenv.WaitFor(t, 20*time.Second, "/readyz to report the outage", func() bool {
		return servicetest.Ready(t, b.base) != nil
	})
	time.Sleep(3 * time.Second)
	end()

	testenv.WaitFor(t, 90*time.Second, "every email", func() bool { return b.smtp.Count() >= n })
	pool := servicetest.Pool(t, b.cfg.Config)
	testenv.WaitFor(t, 30*time.Second, "every task recorded sent", func() bool {
		var left int
		err := pool.QueryRow(context.Background(), "SELECT count(*) FROM emails WHERE status <> 'sent'").Scan(&left)
		return err == nil && left == 0
	})
	var total, retried int
	if err := pool.QueryRow(context.Background(),
		"SELECT count(*), count(*) FILTER (WHERE attempts <> 1) FROM emails").Scan(&total, &retried); err != nil {
		t.Fatal(err)
	}
	if total != n || retried != 0 {
		t.Errorf("%d tasks, %d of them sent after a spent attempt; want %d and 0", total, retried, n)
	}
	if _, parked := amqptest.Get(t, b.topo.DeadQueue(), 500*time.Millisecond); parked {
		t.Error("a task was parked in the dead queue")
	}
	seen := map[string]int{}
	for _, m := range b.smtp.Messages() {
		seen[m.Header.Get("Message-ID")]++
	}
	for id, c := range seen {
		if c > 1 {
			t.Errorf("%s sent %d times", id, c)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct emails, want %d", len(seen), n)
	}
	testenv.WaitFor(t, 20*time.Second, "ready again", func() bool { return servicetest.Ready(t, b.base) == nil })
}
