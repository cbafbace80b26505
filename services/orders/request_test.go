package orders

import (
	"encoding/json"
	"net/mail"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/orderflow/orderflow/pkg/service"
)

// checkRules restates docs/design.md's business rules independently of the decoder,
// so the fuzz test catches a decoder that accepts what it must not.
func checkRules(t *testing.T, req orderRequest) {
	t.Helper()
	fail := func(format string, args ...any) { t.Fatalf("accepted %+v: "+format, append([]any{req}, args...)...) }
	if n := utf8.RuneCountInString(req.CustomerID); n < 1 || n > 64 {
		fail("customerId has %d characters", n)
	}
	if a, err := mail.ParseAddress(req.Email); err != nil || a.Address != req.Email || a.Name != "" {
		fail("email %q is not a bare address", req.Email)
	}
	if !regexp.MustCompile(`^[A-Z]{3}$`).MatchString(req.Currency) {
		fail("currency %q", req.Currency)
	}
	if req.PaymentToken == "" {
		fail("empty paymentToken")
	}
	if len(req.Items) < 1 || len(req.Items) > 100 {
		fail("%d items", len(req.Items))
	}
	for i, it := range req.Items {
		if it.SKU == "" || utf8.RuneCountInString(it.SKU) > 64 {
			fail("items[%d].sku %q", i, it.SKU)
		}
		if it.Quantity < 1 || it.Quantity > 1000 {
			fail("items[%d].quantity %d", i, it.Quantity)
		}
		if it.UnitPriceCents < 1 || it.UnitPriceCents > 10_000_000 {
			fail("items[%d].unitPriceCents %d", i, it.UnitPriceCents)
		}
	}
	if tot := req.totalCents(); tot < 1 || tot > 100*1000*10_000_000 {
		fail("total %d", tot)
	}
}

func FuzzDecodeOrderRequest(f *testing.F) {
	for _, seed := range []string{
		validBody,
		`{"customerId":"c","email":"a@b","items":[{"sku":"s","quantity":1000,"unitPriceCents":10000000}],"currency":"USD","paymentToken":"t"}`,
		`{"customerId":"","email":"Ada <a@b.c>","items":[{"sku":"","quantity":0,"unitPriceCents":-1}],"currency":"usd","paymentToken":""}`,
		`{"customerId":1,"email":null,"items":{},"currency":["EUR"],"paymentToken":true}`,
		`{"customerId":"c","email":"a@b.c","items":[1,null,{"sku":"x","quantity":1.5,"unitPriceCents":1e3}],"currency":"EUR","paymentToken":"t"}`,
		`{"customerId":"c","items":[{"sku":"s","quantity":1,"unitPriceCents":1,"extra":1}]}`,
		`{"CustomerId":"c"}`,
		`{} {}`, `[]`, `null`, `"x"`, ``, `{`, "{\"customerId\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, fieldErrs, err := decodeOrderRequest(body)
		if err != nil {
			if fieldErrs != nil {
				t.Fatalf("both an error and field errors: %v, %v", err, fieldErrs)
			}
			return
		}
		for _, fe := range fieldErrs {
			if fe.Field == "" || fe.Message == "" {
				t.Fatalf("field error without field or message: %+v", fe)
			}
		}
		if len(fieldErrs) > 0 {
			return
		}
		checkRules(t, req)
		// The canonical form is accepted too and decodes to the same request,
		// so Idempotency-Key hashes are stable.
		canon, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, fieldErrs, err := decodeOrderRequest(canon)
		if err != nil || len(fieldErrs) > 0 {
			t.Fatalf("canonical form %s refused: %v %v", canon, err, fieldErrs)
		}
		if !reflect.DeepEqual(req, again) || string(req.hash()) != string(again.hash()) {
			t.Fatalf("canonical form decodes differently: %+v vs %+v", req, again)
		}
	})
}

func TestDecodeOrderRequestFieldErrors(t *testing.T) {
	t.Parallel()
	body := `{"customerId":"","email":"nope","items":[{"sku":"a","quantity":0,"unitPriceCents":1},"x",` +
		`{"sku":"","quantity":2000,"unitPriceCents":0}],"currency":"eur","paymentToken":""}`
	_, fieldErrs, err := decodeOrderRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fe := range fieldErrs {
		got = append(got, fe.Field)
	}
	want := []string{"customerId", "email", "items[0].quantity", "items[1]", "items[2].sku",
		"items[2].quantity", "items[2].unitPriceCents", "currency", "paymentToken"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fields = %v, want %v", got, want)
	}
}

func TestRequestHashIgnoresFormatting(t *testing.T) {
	t.Parallel()
	a, _, _ := decodeOrderRequest([]byte(validBody))
	reordered := `{ "paymentToken":"tok_visa", "currency":"EUR",
		"items":[{"unitPriceCents":1250,"quantity":2,"sku":"book-1"}],
		"email":"ada@example.com", "customerId":"c-42" }`
	b, fe, err := decodeOrderRequest([]byte(reordered))
	if err != nil || len(fe) > 0 {
		t.Fatal(err, fe)
	}
	if string(a.hash()) != string(b.hash()) {
		t.Fatal("same order, different hashes")
	}
	b.Items[0].Quantity = 3
	if string(a.hash()) == string(b.hash()) {
		t.Fatal("different orders, same hash")
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("POSTGRES_URL", "postgres://u:secret@db:5432/postgres")
	t.Setenv("KAFKA_BROKERS", "k1:9092, k2:9092")
	t.Setenv("OUTBOX_RETENTION", "2d")
	t.Setenv("ORDERS_HTTP_ADDR", "")
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":8080" || cfg.Database != "orderflow_orders" || cfg.OutboxRetention.Hours() != 48 ||
		!reflect.DeepEqual(cfg.Brokers, []string{"k1:9092", "k2:9092"}) {
		t.Fatalf("config = %+v", cfg)
	}
	var logged strings.Builder
	logged.WriteString(cfg.LogValue().String())
	if strings.Contains(logged.String(), "secret") {
		t.Fatalf("password logged: %s", logged.String())
	}

	t.Setenv("KAFKA_BROKERS", "")
	t.Setenv("OUTBOX_RETENTION", "")
	if cfg, err = ConfigFromEnv(); err != nil || cfg.OutboxRetention.Hours() != 24*7 || cfg.Brokers[0] != service.DefaultBroker {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}

	t.Setenv("OUTBOX_RETENTION", "week")
	if _, err = ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "OUTBOX_RETENTION") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("bad OUTBOX_RETENTION: %v", err)
	}
	t.Setenv("OUTBOX_RETENTION", "")
	t.Setenv("POSTGRES_URL", "mysql://x")
	if _, err = ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "POSTGRES_URL") {
		t.Fatalf("bad POSTGRES_URL: %v", err)
	}
}
