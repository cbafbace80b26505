package orders

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/events/contract"
)

// cancel posts body to the order's cancel endpoint.
func (b *bundle) cancel(t *testing.T, id, body string, header map[string]string) response {
	t.Helper()
	return do(t, http.MethodPost, b.url+"/orders/"+id+"/cancel", body, header)
}

// place posts validBody and returns the new order.
func (b *bundle) place(t *testing.T) orderView {
	t.Helper()
	resp := b.post(t, validBody, nil)
	if resp.status != http.StatusCreated {
		t.Fatalf("POST /orders: %d %s", resp.status, resp.body)
	}
	return b.get(t, decode[orderResponse](t, resp.body).ID.String())
}

func (b *bundle) get(t *testing.T, id string) orderView {
	t.Helper()
	resp := do(t, http.MethodGet, b.url+"/orders/"+id, "", nil)
	if resp.status != http.StatusOK {
		t.Fatalf("GET order: %d %s", resp.status, resp.body)
	}
	return decode[orderView](t, resp.body)
}

func TestCancelOrderRefusesInvalidInput(t *testing.T) {
	t.Parallel()
	b := setup(t) // shared: no case may write anything
	o := b.place(t)
	id := o.ID.String()
	long := strings.Repeat("é", maxCancelReasonChars+1)

	tests := []struct {
		name   string
		id     string
		body   string
		header map[string]string
		status int
		field  string // the field a 422 names
	}{
		{"unknown order", uuid.NewString(), "", nil, http.StatusNotFound, ""},
		{"unknown order with a reason", uuid.NewString(), `{"reason":"x"}`, nil, http.StatusNotFound, ""},
		{"id not a UUID", "not-a-uuid", "", nil, http.StatusNotFound, ""},
		{"malformed JSON", id, `{"reason":`, nil, http.StatusBadRequest, ""},
		{"trailing garbage", id, `{"reason":"x"}x`, nil, http.StatusBadRequest, ""},
		{"top-level null", id, `null`, nil, http.StatusBadRequest, ""},
		{"top-level array", id, `[{"reason":"x"}]`, nil, http.StatusBadRequest, ""},
		{"top-level string", id, `"x"`, nil, http.StatusBadRequest, ""},
		{"reason too long", id, `{"reason":"` + long + `"}`, nil, http.StatusUnprocessableEntity, "reason"},
		{"reason empty", id, `{"reason":""}`, nil, http.StatusUnprocessableEntity, "reason"},
		{"reason a number", id, `{"reason":42}`, nil, http.StatusUnprocessableEntity, "reason"},
		{"unknown field", id, `{"reason":"x","refund":false}`, nil, http.StatusUnprocessableEntity, "refund"},
		{"text/plain", id, `{"reason":"x"}`, map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType, ""},
		{"too large", id, `{"reason":"x"}` + strings.Repeat(" ", maxCancelBodyBytes), nil, http.StatusRequestEntityTooLarge, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := b.cancel(t, tc.id, tc.body, tc.header)
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.status, tc.status, resp.body)
			}
			p := resp.problem(t)
			if p.Detail == "" {
				t.Errorf("problem without detail: %+v", p)
			}
			if tc.field != "" && (p.Type != ProblemValidation || len(p.Errors) != 1 || p.Errors[0].Field != tc.field) {
				t.Errorf("problem %+v, want one error naming %s", p, tc.field)
			}
		})
	}
	t.Cleanup(func() {
		if after := b.get(t, id); after.Status != "placed" || !after.UpdatedAt.Equal(o.UpdatedAt) || len(after.Timeline) != 1 {
			t.Errorf("order after refused cancels: %+v", after)
		}
		if rows := b.outboxRows(t); len(rows) != 1 || rows[0].EventType != "OrderPlaced" {
			t.Errorf("outbox after refused cancels: %+v", rows)
		}
	})
}

func TestCancelOrderReasons(t *testing.T) {
	t.Parallel()
	b := setup(t)
	longest := strings.Repeat("é", maxCancelReasonChars)
	jsonCT := map[string]string{"Content-Type": "application/json"}
	for _, tc := range []struct {
		name   string
		body   string
		header map[string]string
		reason string
	}{
		{"no body", "", nil, "customer_request"},
		{"no body, JSON content type", "", jsonCT, "customer_request"},
		{"whitespace", " \n", jsonCT, "customer_request"},
		{"empty object", `{}`, nil, "customer_request"},
		{"null reason", `{"reason":null}`, nil, "customer_request"},
		{"a reason", `{"reason":"found it cheaper"}`, nil, "found it cheaper"},
		{"200 characters", `{"reason":"` + longest + `"}`, nil, longest},
		{"escaped", `{"reason":"\u00e9t\u00e9"}`, jsonCT, "été"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := b.place(t)
			resp := b.cancel(t, o.ID.String(), tc.body, tc.header)
			if resp.status != http.StatusAccepted {
				t.Fatalf("status %d; body %s", resp.status, resp.body)
			}
			got := decode[orderView](t, resp.body)
			if got.Status != "cancelled" || got.CancelReason == nil || *got.CancelReason != tc.reason {
				t.Errorf("answered %s", resp.body)
			}
			if after := b.get(t, o.ID.String()); after.Status != "cancelled" || *after.CancelReason != tc.reason {
				t.Errorf("GET after cancel: %+v", after)
			}
			ev := b.cancelledEvent(t, o.ID)
			if ev.payload.Reason != tc.reason || ev.row.CorrelationID != resp.header.Get("X-Correlation-ID") || ev.row.CorrelationID == "" {
				t.Errorf("OrderCancelled %+v, correlation id %q", ev.payload, resp.header.Get("X-Correlation-ID"))
			}
		})
	}
}

// Cancels racing on one order: all are accepted, one cancels.
func TestCancelOrderConcurrently(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.place(t)
	const n = 10
	resps := make([]response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			resps[i] = b.cancel(t, o.ID.String(), `{"reason":"r`+string(rune('0'+i))+`"}`, nil)
		})
	}
	close(start)
	wg.Wait()
	ev := b.cancelledEvent(t, o.ID)
	for i, r := range resps {
		if r.status != http.StatusAccepted {
			t.Fatalf("cancel %d: %d %s", i, r.status, r.body)
		}
		if got := decode[orderView](t, r.body); got.CancelReason == nil || *got.CancelReason != ev.payload.Reason {
			t.Errorf("cancel %d answered %s; the event says %q", i, r.body, ev.payload.Reason)
		}
	}
	if got := b.get(t, o.ID.String()); got.count("OrderCancelled") != 1 {
		t.Errorf("timeline %v", got.events())
	}
}

type cancelledRow struct {
	row     outboxRow
	payload contract.OrderCancelled
}

// cancelledEvent returns the order's one OrderCancelled in the outbox.
func (b *bundle) cancelledEvent(t *testing.T, id uuid.UUID) cancelledRow {
	t.Helper()
	var found []cancelledRow
	for _, r := range b.outboxRows(t) {
		if r.Key == id.String() && r.EventType == "OrderCancelled" {
			found = append(found, cancelledRow{row: r, payload: decode[contract.OrderCancelled](t, r.Payload)})
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d OrderCancelled events for the order, want 1", len(found))
	}
	if found[0].row.Topic != contract.TopicOrders || found[0].payload.OrderID != id.String() {
		t.Errorf("OrderCancelled %+v", found[0])
	}
	return found[0]
}

// Refusals when the order has moved on, set here directly in the database.
func TestCancelOrderTooLate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct{ status, detail string }{
		{"shipped", "shipped"},
		{"payment_failed", "payment failed"},
	} {
		t.Run(tc.status, func(t *testing.T) {
			t.Parallel()
			o := b.place(t)
			if _, err := b.pool.Exec(context.Background(), "UPDATE orders SET status = $2 WHERE id = $1", o.ID, tc.status); err != nil {
				t.Fatal(err)
			}
			before := b.get(t, o.ID.String())
			resp := b.cancel(t, o.ID.String(), "", nil)
			if resp.status != http.StatusConflict {
				t.Fatalf("status %d; body %s", resp.status, resp.body)
			}
			if p := resp.problem(t); p.Type != ProblemNotCancellable || !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("problem %+v", p)
			}
			if after := b.get(t, o.ID.String()); after.Status != tc.status || !after.UpdatedAt.Equal(before.UpdatedAt) ||
				len(after.Timeline) != 1 || after.CancelReason != nil {
				t.Errorf("order after a refused cancel: %+v", after)
			}
			for _, r := range b.outboxRows(t) {
				if r.Key == o.ID.String() && r.EventType != "OrderPlaced" {
					t.Errorf("outbox row %+v", r)
				}
			}
		})
	}
}
