package orders

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/services/orders/internal/ordersdb"
)

const validBody = `{"customerId":"c-42","email":"ada@example.com","items":[{"sku":"book-1","quantity":2,"unitPriceCents":1250}],"currency":"EUR","paymentToken":"tok_visa"}`

// bundle is what setup gives a test: the API on a fresh database, without
// the relay.
type bundle struct {
	pool *pgxpool.Pool
	url  string // the API's base URL
}

func setup(t *testing.T) *bundle {
	t.Helper()
	pool := pgtest.NewPool(t)
	if err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	ob := outbox.New(pool, outbox.Config{Service: serviceName}, log)
	srv := httptest.NewServer(NewServer(pool, ob, prometheus.NewRegistry(), log))
	t.Cleanup(srv.Close)
	return &bundle{pool: pool, url: srv.URL}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) problem(t *testing.T) httpserver.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, r.body)
	}
	var p httpserver.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	if p.Status != r.status || p.Title == "" {
		t.Fatalf("problem %+v for status %d", p, r.status)
	}
	return p
}

func do(t *testing.T, method, url, body string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Error(err) // may run on a goroutine of the test
		return response{}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err) // may run on a goroutine of the test
		return response{}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err) // may run on a goroutine of the test
		return response{}
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (b *bundle) post(t *testing.T, body string, header map[string]string) response {
	t.Helper()
	return do(t, http.MethodPost, b.url+"/orders", body, header)
}

func (b *bundle) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// assertNothingWritten checks a refused request left no trace.
func (b *bundle) assertNothingWritten(t *testing.T) {
	t.Helper()
	for _, table := range []string{"outbox", "orders", "idempotency_keys", "order_timeline"} {
		if n := b.count(t, table); n != 0 {
			t.Errorf("%d rows in %s after a refused request", n, table)
		}
	}
}

// withField returns validBody with the top-level field set to the raw JSON
// value, or removed when raw is "".
func withField(t *testing.T, field, raw string) string {
	return edit(t, func(m map[string]any) {
		if raw == "" {
			delete(m, field)
			return
		}
		m[field] = json.RawMessage(raw)
	})
}

// withItemField does the same to the first item.
func withItemField(t *testing.T, field, raw string) string {
	return edit(t, func(m map[string]any) {
		it := m["items"].([]any)[0].(map[string]any)
		if raw == "" {
			delete(it, field)
			return
		}
		it[field] = json.RawMessage(raw)
	})
}

func withItems(t *testing.T, n int) string {
	return edit(t, func(m map[string]any) {
		items := make([]any, n)
		for i := range items {
			items[i] = map[string]any{"sku": fmt.Sprintf("sku-%d", i), "quantity": 1, "unitPriceCents": 100}
		}
		m["items"] = items
	})
}

func edit(t *testing.T, f func(map[string]any)) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(validBody), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCreateOrderRefusesInvalidInput(t *testing.T) {
	t.Parallel()
	b := setup(t) // shared: every case must leave it empty
	long := func(n int) string { return `"` + strings.Repeat("x", n) + `"` }

	unprocessable := []struct {
		name   string
		body   string
		fields []string // every field the problem must name, in order
	}{
		{"no items", withField(t, "items", `[]`), []string{"items"}},
		{"items missing", withField(t, "items", ""), []string{"items"}},
		{"items null", withField(t, "items", `null`), []string{"items"}},
		{"items not an array", withField(t, "items", `{}`), []string{"items"}},
		{"101 items", withItems(t, 101), []string{"items"}},
		{"item not an object", withField(t, "items", `[1]`), []string{"items[0]"}},
		{"quantity 0", withItemField(t, "quantity", `0`), []string{"items[0].quantity"}},
		{"quantity negative", withItemField(t, "quantity", `-1`), []string{"items[0].quantity"}},
		{"quantity 1001", withItemField(t, "quantity", `1001`), []string{"items[0].quantity"}},
		{"quantity fraction", withItemField(t, "quantity", `1.5`), []string{"items[0].quantity"}},
		{"quantity string", withItemField(t, "quantity", `"1"`), []string{"items[0].quantity"}},
		{"quantity huge", withItemField(t, "quantity", `99999999999999999999`), []string{"items[0].quantity"}},
		{"quantity missing", withItemField(t, "quantity", ""), []string{"items[0].quantity"}},
		{"unitPriceCents 0", withItemField(t, "unitPriceCents", `0`), []string{"items[0].unitPriceCents"}},
		{"unitPriceCents 10,000,001", withItemField(t, "unitPriceCents", `10000001`), []string{"items[0].unitPriceCents"}},
		{"unitPriceCents missing", withItemField(t, "unitPriceCents", ""), []string{"items[0].unitPriceCents"}},
		{"sku empty", withItemField(t, "sku", `""`), []string{"items[0].sku"}},
		{"sku missing", withItemField(t, "sku", ""), []string{"items[0].sku"}},
		{"sku 65 chars", withItemField(t, "sku", long(65)), []string{"items[0].sku"}},
		{"sku number", withItemField(t, "sku", `7`), []string{"items[0].sku"}},
		{"unknown field", withField(t, "coupon", `"FREE"`), []string{"coupon"}},
		{"field in another case", strings.Replace(validBody, "customerId", "CustomerID", 1), []string{"CustomerID", "customerId"}},
		{"unknown item field", withItemField(t, "discount", `5`), []string{"items[0].discount"}},
		{"currency lower-case", withField(t, "currency", `"eur"`), []string{"currency"}},
		{"currency 4 letters", withField(t, "currency", `"EURO"`), []string{"currency"}},
		{"currency 2 letters", withField(t, "currency", `"EU"`), []string{"currency"}},
		{"currency digit", withField(t, "currency", `"E1R"`), []string{"currency"}},
		{"currency non-ASCII", withField(t, "currency", `"ÉUR"`), []string{"currency"}},
		{"currency missing", withField(t, "currency", ""), []string{"currency"}},
		{"email not an address", withField(t, "email", `"ada.example.com"`), []string{"email"}},
		{"email without domain", withField(t, "email", `"ada@"`), []string{"email"}},
		{"email with display name", withField(t, "email", `"Ada <ada@example.com>"`), []string{"email"}},
		{"email with spaces", withField(t, "email", `" ada@example.com "`), []string{"email"}},
		{"email too long", withField(t, "email", `"`+strings.Repeat("a", 250)+`@example.com"`), []string{"email"}},
		{"email empty", withField(t, "email", `""`), []string{"email"}},
		{"email missing", withField(t, "email", ""), []string{"email"}},
		{"customerId empty", withField(t, "customerId", `""`), []string{"customerId"}},
		{"customerId 65 chars", withField(t, "customerId", long(65)), []string{"customerId"}},
		{"customerId number", withField(t, "customerId", `42`), []string{"customerId"}},
		{"customerId missing", withField(t, "customerId", ""), []string{"customerId"}},
		{"paymentToken empty", withField(t, "paymentToken", `""`), []string{"paymentToken"}},
		{"paymentToken missing", withField(t, "paymentToken", ""), []string{"paymentToken"}},
		{"every field at once", `{"customerId":"","email":"x","items":[{"sku":"","quantity":0,"unitPriceCents":0}],"currency":"x","paymentToken":""}`,
			[]string{"customerId", "email", "items[0].sku", "items[0].quantity", "items[0].unitPriceCents", "currency", "paymentToken"}},
		{"empty object", `{}`, []string{"customerId", "email", "items", "currency", "paymentToken"}},
	}
	for _, tc := range unprocessable {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := b.post(t, tc.body, nil)
			if resp.status != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422; body %s", resp.status, resp.body)
			}
			p := resp.problem(t)
			if p.Type != ProblemValidation {
				t.Errorf("type %q", p.Type)
			}
			var got []string
			for _, fe := range p.Errors {
				got = append(got, fe.Field)
				if fe.Message == "" {
					t.Errorf("no message for %s", fe.Field)
				}
			}
			if !slices.Equal(got, tc.fields) {
				t.Errorf("fields %v, want %v", got, tc.fields)
			}
			b.assertNothingWritten(t)
		})
	}

	refused := []struct {
		name   string
		body   string
		header map[string]string
		status int
	}{
		{"malformed JSON", `{"customerId":`, nil, http.StatusBadRequest},
		{"empty body", ``, map[string]string{"Content-Type": "application/json"}, http.StatusBadRequest},
		{"trailing object", validBody + `{}`, nil, http.StatusBadRequest},
		{"trailing garbage", validBody + `x`, nil, http.StatusBadRequest},
		{"top-level array", `[` + validBody + `]`, nil, http.StatusBadRequest},
		{"top-level null", `null`, nil, http.StatusBadRequest},
		{"top-level string", `"order"`, nil, http.StatusBadRequest},
		{"text/plain", validBody, map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"form", validBody, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"no content type", validBody, map[string]string{"Content-Type": ""}, http.StatusUnsupportedMediaType},
		{"one byte too large", validBody + strings.Repeat(" ", maxBodyBytes-len(validBody)+1), nil, http.StatusRequestEntityTooLarge},
		{"much too large", `{"customerId":"` + strings.Repeat("x", 1<<20) + `"}`, nil, http.StatusRequestEntityTooLarge},
		{"idempotency key too long", validBody, map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, http.StatusBadRequest},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := b.post(t, tc.body, tc.header)
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.status, tc.status, resp.body)
			}
			if p := resp.problem(t); p.Detail == "" {
				t.Errorf("problem without detail: %+v", p)
			}
			b.assertNothingWritten(t)
		})
	}
}

// TestCreateOrderAcceptsLimits posts orders at the edge of every rule.
func TestCreateOrderAcceptsLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	exactly64KiB := validBody + strings.Repeat(" ", maxBodyBytes-len(validBody))
	for name, body := range map[string]string{
		"100 items":          withItems(t, 100),
		"quantity 1000":      withItemField(t, "quantity", `1000`),
		"unitPriceCents 10M": withItemField(t, "unitPriceCents", `10000000`),
		"quantity 1, price 1": edit(t, func(m map[string]any) {
			m["items"] = []any{map[string]any{"sku": "s", "quantity": 1, "unitPriceCents": 1}}
		}),
		"customerId 64 chars":      withField(t, "customerId", `"`+strings.Repeat("é", 64)+`"`),
		"customerId 1 char":        withField(t, "customerId", `"c"`),
		"sku 64 chars":             withItemField(t, "sku", `"`+strings.Repeat("s", 64)+`"`),
		"email without dot":        withField(t, "email", `"root@localhost"`),
		"email with plus":          withField(t, "email", `"ada+orders@example.co.uk"`),
		"body exactly 64 KiB":      exactly64KiB,
		"duplicate key, last wins": strings.Replace(validBody, `"currency"`, `"currency":"XXX","currency"`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			resp := b.post(t, body, map[string]string{"Content-Type": "application/json; charset=utf-8"})
			if resp.status != http.StatusCreated {
				t.Fatalf("status %d, want 201; body %s", resp.status, resp.body)
			}
		})
	}
}

type orderResponse struct {
	ID            uuid.UUID   `json:"id"`
	Status        string      `json:"status"`
	CustomerID    string      `json:"customerId"`
	Email         string      `json:"email"`
	Items         []orderItem `json:"items"`
	TotalCents    int64       `json:"totalCents"`
	Currency      string      `json:"currency"`
	CreatedAt     time.Time   `json:"createdAt"`
	CancelReason  *string     `json:"cancelReason"`
	PointsAwarded *int64      `json:"pointsAwarded"`
	Timeline      []struct {
		Event      string    `json:"event"`
		EventID    uuid.UUID `json:"eventId"`
		Service    string    `json:"service"`
		OccurredAt time.Time `json:"occurredAt"`
	} `json:"timeline"`
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

type outboxRow struct {
	EventID       uuid.UUID
	Topic         string
	Key           string
	EventType     string
	Payload       []byte
	CorrelationID string
	OccurredAt    time.Time
}

func (b *bundle) outboxRows(t *testing.T) []outboxRow {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		"SELECT event_id, topic, key, event_type, payload::text, correlation_id, occurred_at FROM outbox ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		var payload string
		if err := rows.Scan(&r.EventID, &r.Topic, &r.Key, &r.EventType, &payload, &r.CorrelationID, &r.OccurredAt); err != nil {
			t.Fatal(err)
		}
		r.Payload = []byte(payload)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCreateOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := `{"customerId":"c-42","email":"ada@example.com","items":[{"sku":"book-1","quantity":2,"unitPriceCents":1250},` +
		`{"sku":"pen","quantity":3,"unitPriceCents":99}],"currency":"EUR","paymentToken":"tok_visa"}`
	resp := b.post(t, body, map[string]string{"X-Correlation-ID": "corr-test-1"})
	if resp.status != http.StatusCreated {
		t.Fatalf("status %d; body %s", resp.status, resp.body)
	}
	if ct := resp.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if got := resp.header.Get("X-Correlation-ID"); got != "corr-test-1" {
		t.Errorf("X-Correlation-ID echoed as %q", got)
	}
	o := decode[orderResponse](t, resp.body)
	if o.ID.Version() != 7 {
		t.Errorf("order id %s is not a UUIDv7", o.ID)
	}
	if loc := resp.header.Get("Location"); loc != "/orders/"+o.ID.String() {
		t.Errorf("Location %q", loc)
	}
	wantItems := []orderItem{{"book-1", 2, 1250}, {"pen", 3, 99}}
	if o.Status != "placed" || o.CustomerID != "c-42" || o.Email != "ada@example.com" || o.Currency != "EUR" ||
		o.TotalCents != 2*1250+3*99 || !slices.Equal(o.Items, wantItems) || time.Since(o.CreatedAt) > time.Minute {
		t.Errorf("order %+v", o)
	}
	// The POST answer is the subset docs/design.md names; GET has the rest.
	m := decode[map[string]any](t, resp.body)
	for _, k := range []string{"id", "status", "customerId", "email", "items", "totalCents", "currency", "createdAt"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %s", k, resp.body)
		}
	}
	if _, ok := m["paymentToken"]; ok {
		t.Error("the payment token is echoed")
	}

	rows := b.outboxRows(t)
	if len(rows) != 1 {
		t.Fatalf("%d outbox rows, want 1", len(rows))
	}
	r := rows[0]
	if r.Topic != "orders" || r.Key != o.ID.String() || r.EventType != "OrderPlaced" || r.CorrelationID != "corr-test-1" {
		t.Errorf("outbox row %+v", r)
	}
	ev := decode[map[string]any](t, r.Payload)
	want := map[string]any{
		"event": "OrderPlaced", "version": 1.0, "eventId": r.EventID.String(), "orderId": o.ID.String(),
		"customerId": "c-42", "email": "ada@example.com", "totalCents": 2797.0, "currency": "EUR",
		"paymentToken": "tok_visa", "occurredAt": o.CreatedAt.Format(time.RFC3339Nano),
		"items": []any{
			map[string]any{"sku": "book-1", "quantity": 2.0, "unitPriceCents": 1250.0},
			map[string]any{"sku": "pen", "quantity": 3.0, "unitPriceCents": 99.0},
		},
	}
	if got, _ := json.Marshal(ev); string(got) != string(must(json.Marshal(want))) {
		t.Errorf("payload\n got %s\nwant %s", got, must(json.Marshal(want)))
	}
	if !r.OccurredAt.Equal(o.CreatedAt) {
		t.Errorf("occurred_at %v, created %v", r.OccurredAt, o.CreatedAt)
	}
	var orderCorrelation string
	var createdAt, updatedAt time.Time
	if err := b.pool.QueryRow(context.Background(), "SELECT correlation_id, created_at, updated_at FROM orders").Scan(&orderCorrelation, &createdAt, &updatedAt); err != nil || orderCorrelation != "corr-test-1" {
		t.Errorf("orders.correlation_id %q, %v", orderCorrelation, err)
	}
	if !createdAt.Equal(o.CreatedAt) || !updatedAt.Equal(o.CreatedAt) {
		t.Errorf("row created %v, updated %v; the answer says %v", createdAt, updatedAt, o.CreatedAt)
	}
}

// POST /orders writes its three rows (the order, its timeline entry, its
// OrderPlaced event) in one round trip, as an implicit transaction: when any
// of them fails, none is written and the client gets a 5xx. Each table in
// turn refuses inserts (a trigger), the others must stay empty.
func TestCreateOrderAllOrNothing(t *testing.T) {
	t.Parallel()
	for _, table := range []string{"orders", "order_timeline", "outbox"} {
		t.Run(table, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.Background()
			_, err := b.pool.Exec(ctx, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
				$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
				CREATE TRIGGER refuse BEFORE INSERT ON `+table+` FOR EACH ROW EXECUTE FUNCTION refuse()`)
			if err != nil {
				t.Fatal(err)
			}
			if resp := b.post(t, validBody, nil); resp.status/100 != 5 {
				t.Errorf("status %d with %s refusing inserts; body %s", resp.status, table, resp.body)
			}
			for _, other := range []string{"orders", "order_timeline", "outbox"} {
				var n int
				if err := b.pool.QueryRow(ctx, "SELECT count(*) FROM "+other).Scan(&n); err != nil || n != 0 {
					t.Errorf("%s holds %d rows (%v) after a failed POST", other, n, err)
				}
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestCreateOrderGeneratesCorrelationID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp := b.post(t, validBody, nil)
	if resp.status != http.StatusCreated {
		t.Fatalf("status %d; body %s", resp.status, resp.body)
	}
	id := resp.header.Get("X-Correlation-ID")
	if id == "" {
		t.Fatal("no X-Correlation-ID in the response")
	}
	if rows := b.outboxRows(t); len(rows) != 1 || rows[0].CorrelationID != id {
		t.Fatalf("outbox rows %+v, want one with correlation id %s", rows, id)
	}
	// Refusals carry one too, so a client can quote it.
	if resp := b.post(t, `{`, nil); resp.header.Get("X-Correlation-ID") == "" {
		t.Error("no X-Correlation-ID on a 400")
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := map[string]string{"Idempotency-Key": "key-1"}
	first := b.post(t, validBody, key)
	if first.status != http.StatusCreated {
		t.Fatalf("first: status %d; body %s", first.status, first.body)
	}

	// The same order, formatted differently, under the same key.
	reformatted := edit(t, func(map[string]any) {})
	replay := b.post(t, reformatted, key)
	if replay.status != http.StatusCreated || replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: status %d, headers %v; body %s", replay.status, replay.header, replay.body)
	}
	if string(replay.body) != string(first.body) || replay.header.Get("Location") != first.header.Get("Location") {
		t.Errorf("replay answered\n%s\nnot\n%s", replay.body, first.body)
	}

	conflict := b.post(t, withItemField(t, "quantity", `3`), key)
	if conflict.status != http.StatusUnprocessableEntity {
		t.Fatalf("conflict: status %d; body %s", conflict.status, conflict.body)
	}
	if p := conflict.problem(t); p.Type != ProblemIdempotencyConflict || len(p.Errors) != 1 || p.Errors[0].Field != "Idempotency-Key" {
		t.Errorf("conflict problem %+v", p)
	}

	// Another key is another order; no key is always a new order.
	if resp := b.post(t, validBody, map[string]string{"Idempotency-Key": "key-2"}); resp.status != http.StatusCreated {
		t.Errorf("second key: status %d", resp.status)
	}
	if resp := b.post(t, validBody, nil); resp.status != http.StatusCreated {
		t.Errorf("no key: status %d", resp.status)
	}
	if n := b.count(t, "orders"); n != 3 {
		t.Errorf("%d orders, want 3", n)
	}
	if n := b.count(t, "outbox"); n != 3 {
		t.Errorf("%d outbox rows, want 3", n)
	}
}

func TestIdempotencyKeyConcurrentReplays(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 10
	resps := make([]response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			resps[i] = b.post(t, validBody, map[string]string{"Idempotency-Key": "same-key"})
		})
	}
	close(start)
	wg.Wait()

	created := 0
	var id uuid.UUID
	for i, r := range resps {
		if r.status != http.StatusCreated {
			t.Fatalf("request %d: status %d; body %s", i, r.status, r.body)
		}
		if r.header.Get("Idempotent-Replayed") != "true" {
			created++
		}
		o := decode[orderResponse](t, r.body)
		if id == uuid.Nil {
			id = o.ID
		} else if o.ID != id {
			t.Errorf("request %d got order %s, another got %s", i, o.ID, id)
		}
	}
	if created != 1 {
		t.Errorf("%d requests created an order (no Idempotent-Replayed), want 1", created)
	}
	if got := b.count(t, "orders"); got != 1 {
		t.Errorf("%d orders, want 1", got)
	}
	if got := b.count(t, "outbox"); got != 1 {
		t.Errorf("%d outbox rows, want 1", got)
	}
}

func TestGetOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := decode[orderResponse](t, b.post(t, validBody, nil).body)

	// Events from other services, as the consumers will record them, out of
	// order.
	q := ordersdb.New(b.pool)
	later := []ordersdb.InsertTimelineEventParams{
		{OrderID: created.ID, Event: "PickScheduled", EventID: uuid.Must(uuid.NewV7()), Service: "warehouse", OccurredAt: created.CreatedAt.Add(2 * time.Second)},
		{OrderID: created.ID, Event: "PaymentCaptured", EventID: uuid.Must(uuid.NewV7()), Service: "payments", OccurredAt: created.CreatedAt.Add(time.Second)},
	}
	for _, p := range later {
		if _, err := q.InsertTimelineEvent(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	// A redelivery changes nothing.
	if n, err := q.InsertTimelineEvent(context.Background(), later[0]); err != nil || n != 0 {
		t.Fatalf("duplicate timeline insert: %d rows, %v", n, err)
	}

	resp := do(t, http.MethodGet, b.url+"/orders/"+created.ID.String(), "", nil)
	if resp.status != http.StatusOK {
		t.Fatalf("status %d; body %s", resp.status, resp.body)
	}
	o := decode[orderResponse](t, resp.body)
	if o.ID != created.ID || o.Status != "placed" || o.TotalCents != 2500 || o.CustomerID != "c-42" ||
		len(o.Items) != 1 || o.CancelReason != nil || o.PointsAwarded == nil || *o.PointsAwarded != 0 ||
		!o.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("order %+v", o)
	}
	m := decode[map[string]any](t, resp.body)
	if _, ok := m["cancelReason"]; !ok {
		t.Error("no cancelReason field")
	}

	rows := b.outboxRows(t)
	var got []string
	for _, e := range o.Timeline {
		got = append(got, e.Service+"/"+e.Event)
	}
	if want := []string{"orders/OrderPlaced", "payments/PaymentCaptured", "warehouse/PickScheduled"}; !slices.Equal(got, want) {
		t.Fatalf("timeline %v, want %v", got, want)
	}
	if first := o.Timeline[0]; first.EventID != rows[0].EventID || !first.OccurredAt.Equal(rows[0].OccurredAt) {
		t.Errorf("timeline entry %+v does not match the OrderPlaced event %+v", first, rows[0])
	}
}

func TestGetOrderNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, id := range []string{uuid.NewString(), "not-a-uuid", "1"} {
		resp := do(t, http.MethodGet, b.url+"/orders/"+id, "", nil)
		if resp.status != http.StatusNotFound {
			t.Errorf("%s: status %d; body %s", id, resp.status, resp.body)
			continue
		}
		resp.problem(t)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if resp := do(t, http.MethodGet, b.url+"/healthz", "", nil); resp.status != http.StatusOK {
		t.Errorf("healthz: %d %s", resp.status, resp.body)
	}
	// Without a relay the service is alive but not ready.
	resp := do(t, http.MethodGet, b.url+"/readyz", "", nil)
	if resp.status != http.StatusServiceUnavailable || !strings.Contains(string(resp.body), "relay") {
		t.Errorf("readyz without relay: %d %s", resp.status, resp.body)
	}
	b.post(t, validBody, nil)
	resp = do(t, http.MethodGet, b.url+"/metrics", "", nil)
	if !strings.Contains(string(resp.body), `orderflow_http_request_duration_seconds_count{code="201",route="/orders"} 1`) {
		t.Errorf("metrics lack the POST:\n%s", resp.body)
	}
}
