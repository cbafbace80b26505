package orders

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/outbox"
)

// hostileSeeds are POST /orders bodies a hostile client sends: validBody
// with one value swapped for one that must be refused.
func hostileSeeds() []string {
	swap := func(old, new string) string { return strings.Replace(validBody, old, new, 1) }
	seeds := []string{validBody}
	for _, e := range hostileEmails {
		seeds = append(seeds, swap(`"ada@example.com"`, string(must(json.Marshal(e)))))
	}
	for _, c := range controls {
		seeds = append(seeds,
			swap(`"c-42"`, `"c-42`+c+`"`), swap(`"book-1"`, `"`+c+`"`), swap(`"tok_visa"`, `"tok`+c+`visa"`),
			swap(`"EUR"`, `"E`+c+`R"`))
	}
	return append(seeds,
		swap(`"c-42"`, "\"c-\xff\""), swap(`"book-1"`, "\"\xc3(\""), swap(`"tok_visa"`, "\"\xed\xa0\x80\""),
		swap(`"c-42"`, `"\ud800"`), swap(`"c-42"`, `"\ud83d\ude00"`), swap(`"c-42"`, "\"\x7f\u0085\""),
		swap(`"c-42"`, `"`+strings.Repeat("é", 65)+`"`), swap(`"book-1"`, `"`+strings.Repeat("s", 65)+`"`),
	)
}

// FuzzOrderPlacedEvent asserts the contract's side of every request the
// decoder accepts: the OrderPlaced that orders writes for it, and the
// payment events payments writes from that, pass their schemas, so an
// accepted request can never fail in the outbox (a 500) or downstream.
func FuzzOrderPlacedEvent(f *testing.F) {
	for _, s := range hostileSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, fieldErrs, err := decodeOrderRequest(body)
		if err != nil || len(fieldErrs) > 0 {
			return
		}
		o := Order{ID: uuid.Must(uuid.NewV7()), CustomerID: req.CustomerID, Email: req.Email, Items: req.Items,
			TotalCents: req.totalCents(), Currency: req.Currency, CreatedAt: time.Now()}
		placed := orderPlaced(o, req.PaymentToken)
		events := []contract.Event{
			placed,
			&contract.PaymentCaptured{Envelope: placed.Envelope, PaymentID: "pay-1", CustomerID: placed.CustomerID,
				Email: placed.Email, AmountCents: placed.TotalCents, Currency: placed.Currency, Items: placed.Items},
			&contract.PaymentFailed{Envelope: placed.Envelope, CustomerID: placed.CustomerID, Email: placed.Email, Reason: "declined"},
			&contract.PaymentRefunded{Envelope: placed.Envelope, PaymentID: "pay-1", CustomerID: placed.CustomerID,
				Email: placed.Email, AmountCents: placed.TotalCents, Reason: "out_of_stock"},
			&contract.PointsAwarded{Envelope: placed.Envelope, CustomerID: placed.CustomerID, Points: 1},
		}
		for _, ev := range events {
			ev.Meta().Event = ev.Name()
			data, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if err := contract.Validate(ev.Name(), 1, data); err != nil {
				t.Fatalf("accepted %q, but its %s fails its schema: %v", body, ev.Name(), err)
			}
		}
	})
}

// FuzzOrdersHTTP drives the orders routes over a real database: POST
// /orders with the body, GET /orders/{id} and POST /orders/{id}/cancel
// with the id (escaped as a client sends it) and the body. No answer is a
// 5xx, every refusal is problem+json and writes nothing, and an accepted
// order is the request as sent, its event in the outbox.
func FuzzOrdersHTTP(f *testing.F) {
	for _, s := range hostileSeeds() {
		f.Add("0b9f6a52-4c1e-4d8a-9a57-3f2c8e1d7b64", []byte(s))
	}
	for _, id := range append(servicetest.HostileValues, uuid.NewString()+"\x00") {
		f.Add(id, []byte(`{"reason":"x"}`))
	}
	f.Add("x", []byte("{\"reason\":\"\\u0000\"}"))
	f.Add("x", []byte("{\"reason\":\"\xff\"}"))
	e := servicetest.NewEdge(f, serviceName, migrations, func(pool *pgxpool.Pool, log *slog.Logger) func(chi.Router) {
		return newAPI(pool, outbox.New(pool, outbox.Config{Service: serviceName}, log), log).routes
	})
	tables := []string{"orders", "outbox", "order_timeline", "idempotency_keys"}
	f.Fuzz(func(t *testing.T, id string, body []byte) {
		before := e.Rows(t, tables...)
		if rec := e.Serve(t, http.MethodPost, "/orders", body); rec.Code == http.StatusCreated {
			acceptedOrder(t, e.Pool, body, rec.Body.Bytes())
			before = e.Rows(t, tables...)
		}
		path := "/orders/" + url.PathEscape(id)
		e.Serve(t, http.MethodGet, path, nil)
		if rec := e.Serve(t, http.MethodPost, path+"/cancel", body); rec.Code == http.StatusAccepted {
			t.Fatalf("cancelled an order no test placed: %s %s", path, rec.Body)
		}
		if after := e.Rows(t, tables...); after != before {
			t.Fatalf("refused requests wrote %d rows", after-before)
		}
	})
}

// acceptedOrder checks an order POST /orders answered 201 for: it is the
// request as decoded, unaltered, and its OrderPlaced in the outbox passes
// the schema.
func acceptedOrder(t *testing.T, pool *pgxpool.Pool, body, answer []byte) {
	t.Helper()
	req, fieldErrs, err := decodeOrderRequest(body)
	if err != nil || len(fieldErrs) > 0 {
		t.Fatalf("201 for a body the decoder refuses: %q: %v %v", body, err, fieldErrs)
	}
	o := decode[orderResponse](t, answer)
	if o.CustomerID != req.CustomerID || o.Email != req.Email || o.Currency != req.Currency || len(o.Items) != len(req.Items) {
		t.Fatalf("order %+v is not the request %+v", o, req)
	}
	var payload []byte
	if err := pool.QueryRow(context.Background(), "SELECT payload FROM outbox WHERE key = $1", o.ID.String()).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	if err := contract.Validate("OrderPlaced", 1, payload); err != nil {
		t.Fatal(err)
	}
}
