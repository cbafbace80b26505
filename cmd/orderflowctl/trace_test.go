package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/amqptest"
	"github.com/orderflow/orderflow/internal/devstack"
	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
)

// The whole stack as `make run` runs it (devstack.Run), on databases of
// its own prefix and the test broker: a captured order is traced from
// OrderPlaced to its shipping email, each hop in order with its Kafka
// offsets, the award (due in an hour) named as missing; a declined order's
// story is complete; an unknown id fails. Not parallel: the stack and the
// trace read the environment.
func TestTraceFollowsOrders(t *testing.T) {
	prefix := "orderflowctl_trace_" + randomSuffix() + "_"
	t.Cleanup(func() { // registered first, so it runs after the stack stopped
		for _, name := range services {
			if err := postgres.DropDatabase(context.Background(), pgtest.ServerURL(), prefix+name); err != nil {
				t.Logf("drop %s: %v", prefix+name, err)
			}
		}
	})
	broker := kafkatest.Start(t)
	for k, v := range map[string]string{
		"DATABASE_PREFIX": prefix, "KAFKA_BROKERS": strings.Join(broker.Addrs, ","), "POSTGRES_URL": pgtest.ServerURL(),
		"POSTGRES_MAX_CONNS": "3", "WAREHOUSE_SHIP_DELAY": "300ms", "LOYALTY_AWARD_DELAY": "1h",
		"SMTP_ADDR": "", "LOG_LEVEL": "warn",
	} {
		t.Setenv(k, v)
	}
	addrs := map[string]string{}
	for _, name := range services {
		addrs[name] = testenv.FreeAddr(t)
	}
	running := testenv.Start(t, func(ctx context.Context) error {
		return devstack.Run(ctx, &bytes.Buffer{}, devstack.Options{
			QueuePrefix: amqptest.Prefix(t), DataDir: t.TempDir(), Logs: t.Output(),
			Configure: func(name string, c *service.Config) { c.HTTPAddr = addrs[name] },
		})
	})
	t.Cleanup(running.Stop)
	for _, name := range services {
		servicetest.WaitReady(t, "http://"+addrs[name])
	}
	ordersURL := "http://" + addrs["orders"] + "/orders"

	// Captured: everything up to the shipping email, the points an hour
	// away.
	paid := place(t, ordersURL, "tok_visa")
	tr, out := waitTrace(t, paid, func(tr *trace) bool {
		return len(tr.Missing) == 1 && strings.HasPrefix(tr.Missing[0], "PointsAwarded")
	})
	p := keyPartition(paid, 12)
	placedAt := regexp.MustCompile(fmt.Sprintf(`OrderPlaced published orders\[%d\]@(\d+)`, p)).FindStringSubmatch(out)
	if placedAt == nil {
		t.Fatalf("no OrderPlaced record on orders[%d]:\n%s", p, out)
	}
	wantInOrder(t, tr, out,
		"orders outbox OrderPlaced written",
		fmt.Sprintf("OrderPlaced published orders[%d]@%s", p, placedAt[1]),
		fmt.Sprintf("payments handled OrderPlaced from orders[%d]@%s", p, placedAt[1]),
		"payments outbox PaymentCaptured written",
		fmt.Sprintf("PaymentCaptured published payments[%d]@", p),
		"warehouse handled PaymentCaptured from payments",
		"timer ship scheduled",
		"timer ship fired",
		"warehouse outbox OrderShipped written",
		fmt.Sprintf("OrderShipped published warehouse[%d]@", p),
		"email handled OrderShipped from warehouse",
		"email task shipped queued to ada@example.com, published to RabbitMQ",
		"email shipped sent",
	)
	for _, want := range []string{
		"email handled OrderPlaced", "orders handled PaymentCaptured", "loyalty handled PaymentCaptured",
		"timer award scheduled", "email confirmation sent", "orders handled OrderShipped", "orders handled PickScheduled",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no step %q:\n%s", want, out)
		}
	}
	if m := tr.Missing[0]; !strings.Contains(m, "25 points not awarded yet; its award timer is due at") {
		t.Errorf("missing %q; want the award timer due", m)
	}
	if !strings.Contains(out, "not happened yet (1):\n  - PointsAwarded") {
		t.Errorf("no missing section:\n%s", out)
	}

	// Declined: the payment failed and its email went; nothing is missing.
	declined := place(t, ordersURL, "tok_declined")
	tr, out = waitTrace(t, declined, func(tr *trace) bool { return len(tr.Missing) == 0 })
	wantInOrder(t, tr, out, "orders outbox OrderPlaced written", "payments handled OrderPlaced",
		"payments outbox PaymentFailed written", "orders handled PaymentFailed", "email payment_failed sent")
	if tr.Status != "payment_failed" || !strings.Contains(out, "nothing missing: the order's story is complete (payment_failed)") {
		t.Errorf("status %s:\n%s", tr.Status, out)
	}
	if strings.Contains(out, "PaymentCaptured") || strings.Contains(out, "timer") {
		t.Errorf("a declined order with a capture or a timer:\n%s", out)
	}

	// --json carries the same steps.
	var js bytes.Buffer
	if err := run(context.Background(), []string{"trace", "--json", declined}, &js, time.Now()); err != nil {
		t.Fatal(err)
	}
	var decoded trace
	if err := json.Unmarshal(js.Bytes(), &decoded); err != nil || len(decoded.Steps) != len(tr.Steps) || decoded.OrderID != declined {
		t.Errorf("--json: %v, %d steps, want %d:\n%s", err, len(decoded.Steps), len(tr.Steps), js.String())
	}

	unknown := uuid.NewString()
	err := run(context.Background(), []string{"trace", unknown}, &bytes.Buffer{}, time.Now())
	if !errors.Is(err, errUnknownOrder) || !strings.Contains(err.Error(), unknown) || !strings.Contains(err.Error(), prefix+"orders") {
		t.Errorf("trace of an unknown order: %v", err)
	}
}

// place posts an order of two units of a SKU of its own, paid with token,
// and returns its id.
func place(t *testing.T, url, token string) string {
	t.Helper()
	body := fmt.Sprintf(`{"customerId":"c-trace","email":"ada@example.com","items":[{"sku":"trace-%s","quantity":2,"unitPriceCents":1250}],"currency":"EUR","paymentToken":%q}`,
		randomSuffix(), token)
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /orders: %s, %v", resp.Status, err)
	}
	return o.ID
}

// waitTrace traces the order until done holds, and returns the last trace
// and its text.
func waitTrace(t *testing.T, id string, done func(*trace) bool) (*trace, string) {
	t.Helper()
	var tr *trace
	var out bytes.Buffer
	deadline := time.Now().Add(60 * time.Second)
	for {
		cfg, err := traceConfigFromEnv()
		if err != nil {
			t.Fatal(err)
		}
		f, err := gatherTrace(context.Background(), cfg, id)
		if err != nil {
			t.Fatal(err)
		}
		tr = buildTrace(f, time.Now())
		out.Reset()
		printTrace(&out, tr)
		if len(tr.Unavailable) == 0 && done(tr) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s did not reach the expected state:\n%s", id, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("trace %s:\n%s", id, out.String())
	return tr, out.String()
}

// wantInOrder checks that steps starting with each of wants come in that
// order in the timeline.
func wantInOrder(t *testing.T, tr *trace, out string, wants ...string) {
	t.Helper()
	i := 0
	for _, s := range tr.Steps {
		if i < len(wants) && strings.HasPrefix(s.What, wants[i]) {
			i++
		}
	}
	if i < len(wants) {
		t.Errorf("step %q is not where expected (after %q) in:\n%s", wants[i], wants[max(i-1, 0)], out)
	}
}
