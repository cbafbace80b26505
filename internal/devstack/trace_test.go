package devstack

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/internal/smtptest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/pkg/service"
)

// One order through the whole stack with tracing on (an in-memory
// recorder in place of OTLP): its spans form one connected trace from POST
// /orders through each relay, consumer and timer to both SMTP sends; and
// each service logs the steps it took with the order's ids.
func TestOneOrderIsOneTrace(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole stack")
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	smtp := smtptest.Start(t)
	logs := &syncBuffer{}
	s := startStackOn(t, map[string]string{
		"WAREHOUSE_SHIP_DELAY": "100ms",
		"LOYALTY_AWARD_DELAY":  "200ms",
		"FRAUD_LIMIT_CENTS":    "1000000",
		"SMTP_ADDR":            smtp.Addr,
		"LOG_FORMAT":           "json",
	}, stackDatabases(t), 4, func(o *Options) {
		o.Logs = io.MultiWriter(logs, t.Output())
		inner := o.Configure
		o.Configure = func(name string, c *service.Config) {
			inner(name, c)
			c.TracerProvider = tp
		}
	})

	id := s.place(t, newOrder("tok_visa", 2, 1250))
	s.waitOrder(t, id, func(v orderView) bool { return v.Status == "shipped" && v.PointsAwarded == 25 })
	s.waitEmails(t, id, "confirmation:sent shipped:sent")

	// The order's trace is the one of the POST that placed it.
	var root sdktrace.ReadOnlySpan
	testenv.WaitFor(t, 10*time.Second, "the POST /orders span", func() bool {
		for _, sp := range rec.Ended() {
			if sp.Name() == "POST /orders" && sp.SpanKind() == trace.SpanKindServer {
				root = sp
			}
		}
		return root != nil
	})
	tid := root.SpanContext().TraceID()
	want := []string{
		"POST /orders",
		"orders publish", "orders receive", "orders process", // OrderPlaced to payments, warehouse, loyalty, email
		"payments publish", "payments process", // PaymentCaptured
		"timer ship fire", "warehouse publish", // OrderShipped
		"timer award fire", "loyalty publish", // PointsAwarded
		"smtp send",
	}
	// Connected: every span's parent is in the trace, so one tree hangs
	// from the POST. Parents end after their children: wait for them.
	var spans []sdktrace.ReadOnlySpan
	var missing, dangling []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		spans = spans[:0]
		for _, sp := range rec.Ended() {
			if sp.SpanContext().TraceID() == tid {
				spans = append(spans, sp)
			}
		}
		missing, dangling = checkTrace(spans, root, want)
		if len(missing)+len(dangling) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the order's trace lacks %v; spans whose parent is not in it: %v; has %v", missing, dangling, spanNames(spans))
		}
	}
	// The AMQP hop is in it: the task's publish, its delivery, the send.
	names := spanNames(spans)
	for _, suffix := range []string{" publish", " process"} {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, "email") && strings.HasSuffix(n, suffix) }) {
			t.Errorf("no RabbitMQ%s span in the trace: %v", suffix, names)
		}
	}
	t.Logf("%d spans in the order's trace: %v", len(spans), names)

	// Logs: one step line per step, in the service that took it, with the
	// order's ids and its trace id.
	steps := map[string]string{
		"order placed": "orders", "payment captured": "payments", "pick scheduled": "warehouse",
		"order shipped": "warehouse", "points awarded": "loyalty", "email queued": "email", "email sent": "email",
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(logs.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil || line["order_id"] != id {
			continue
		}
		msg, _ := line["msg"].(string)
		svc, ok := steps[msg]
		if !ok || line["level"] != "INFO" {
			continue
		}
		seen[msg]++
		if line["service"] != svc {
			t.Errorf("%q logged by %v, want %s", msg, line["service"], svc)
		}
		for _, k := range []string{"correlation_id", "event_id", "trace_id"} {
			if v, _ := line[k].(string); v == "" {
				t.Errorf("%q (%s) has no %s: %s", msg, svc, k, sc.Text())
			}
		}
		if line["trace_id"] != tid.String() {
			t.Errorf("%q (%s) trace_id %v, want the order's %s", msg, svc, line["trace_id"], tid)
		}
	}
	for msg := range steps {
		want := 1
		if strings.HasPrefix(msg, "email") {
			want = 2 // confirmation and shipping
		}
		if seen[msg] != want {
			t.Errorf("%d info lines %q for the order, want %d", seen[msg], msg, want)
		}
	}
}

// checkTrace returns the wanted span names the trace lacks (two SMTP sends
// are wanted) and the spans whose parent is not in it.
func checkTrace(spans []sdktrace.ReadOnlySpan, root sdktrace.ReadOnlySpan, want []string) (missing, dangling []string) {
	names := spanNames(spans)
	for _, n := range want {
		if !slices.Contains(names, n) {
			missing = append(missing, n)
		}
	}
	if count(names, "smtp send") < 2 {
		missing = append(missing, "a second smtp send")
	}
	byID := map[trace.SpanID]bool{}
	for _, sp := range spans {
		byID[sp.SpanContext().SpanID()] = true
	}
	for _, sp := range spans {
		if sp.SpanContext().SpanID() != root.SpanContext().SpanID() && !byID[sp.Parent().SpanID()] {
			dangling = append(dangling, sp.Name())
		}
	}
	return missing, dangling
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	names := make([]string, len(spans))
	for i, sp := range spans {
		names[i] = sp.Name()
	}
	slices.Sort(names)
	return names
}

// syncBuffer is a bytes.Buffer the services write to at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
