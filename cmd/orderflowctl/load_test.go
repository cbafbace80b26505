package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/internal/servicetest"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/orders"
	"github.com/orderflow/orderflow/services/warehouse"
)

// loadSummary is what the test reads of load --json.
type loadSummary struct {
	RunID     string         `json:"runId"`
	Scheduled int            `json:"scheduled"`
	Sent      int            `json:"sent"`
	Dropped   int            `json:"dropped"`
	Accepted  int            `json:"accepted"`
	Rejected  map[string]int `json:"rejected"`
	Errors    int            `json:"errors"`
	Outcomes  map[string]struct {
		Sent, Accepted int
	} `json:"outcomes"`
	Cancels struct {
		Sent, Accepted, Errors int
		Rejected               map[string]int
	} `json:"cancels"`
	Latency  map[string]float64 `json:"latency"`
	SentRate float64            `json:"sentRate"`
}

// orderView is what the test reads of GET /orders/{id}.
type orderView struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	TotalCents int64  `json:"totalCents"`
	Items      []struct {
		SKU string `json:"sku"`
	} `json:"items"`
}

// load against the real orders and warehouse services (their Run, their
// databases, the test broker): every accepted order is in --out once with
// its outcome, and is the order the outcome asks for; the counts add up;
// the cancelled ones are cancelled; the out-of-stock SKU has no stock.
func TestLoadAgainstOrders(t *testing.T) {
	t.Parallel()
	broker := kafkatest.Start(t)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ordersCfg := orders.Config{Config: servicetest.Config(t, broker)}
	whCfg := warehouse.Config{Config: servicetest.Config(t, broker), DefaultStock: 1000}
	testenv.Start(t, func(ctx context.Context) error { return orders.Run(ctx, ordersCfg, log) })
	testenv.Start(t, func(ctx context.Context) error { return warehouse.Run(ctx, whCfg, log) })
	ordersURL, whURL := "http://"+ordersCfg.HTTPAddr, "http://"+whCfg.HTTPAddr
	servicetest.WaitReady(t, ordersURL)
	servicetest.WaitReady(t, whURL)

	outPath := filepath.Join(t.TempDir(), "orders.txt")
	var stdout, stderr bytes.Buffer
	args := []string{"--rate", "50", "--duration", "2s", "--url", ordersURL, "--warehouse-url", whURL,
		"--mix", "happy=1,declined=1,flaky=1,fraud=1,out-of-stock=1,cancelled=1",
		"--out", outPath, "--seed", "11", "--idempotency", "--json"}
	if err := load(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("load: %v\nstderr:\n%s", err, stderr.String())
	}
	var sum loadSummary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, stdout.String())
	}
	if sum.Scheduled != 100 || sum.Sent != 100 || sum.Dropped != 0 || sum.Accepted != 100 || sum.Errors != 0 || len(sum.Rejected) != 0 {
		t.Errorf("summary %+v; want 100 scheduled, sent and accepted", sum)
	}
	if !strings.Contains(stderr.String(), "load: 1s  sent ") {
		t.Errorf("no progress line on stderr:\n%s", stderr.String())
	}
	if sum.Latency["p99Ms"] <= 0 || sum.Latency["maxMs"] < sum.Latency["p99Ms"] {
		t.Errorf("latency %v", sum.Latency)
	}

	data, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for line := range strings.Lines(string(data)) {
		id, outcome, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
		if _, dup := rows[id]; !ok || dup {
			t.Fatalf("out line %q: not <id>\\t<outcome>, or the id again", line)
		}
		rows[id] = outcome
	}
	if len(rows) != sum.Accepted {
		t.Fatalf("%d rows in --out, %d accepted", len(rows), sum.Accepted)
	}
	perOutcome := map[string]int{}
	for id, outcome := range rows {
		perOutcome[outcome]++
		var o orderView
		if code := servicetest.GetJSON(t, ordersURL+"/orders/"+id, &o); code != http.StatusOK {
			t.Fatalf("GET /orders/%s: %d", id, code)
		}
		oos := o.Items[0].SKU == "load-"+sum.RunID+"-oos"
		fraud := o.TotalCents > loadgen.DefaultFraudLimitCents
		cancelled := o.Status == "cancelled"
		if oos != (outcome == "out-of-stock") || fraud != (outcome == "fraud") || cancelled != (outcome == "cancelled") {
			t.Errorf("%s written as %s: status %s, total %d, sku %s", id, outcome, o.Status, o.TotalCents, o.Items[0].SKU)
		}
	}
	for _, o := range loadgen.Outcomes {
		if got := sum.Outcomes[string(o)]; perOutcome[string(o)] == 0 || got.Accepted != perOutcome[string(o)] || got.Sent != got.Accepted {
			t.Errorf("%s: %d rows, summary %+v", o, perOutcome[string(o)], got)
		}
	}
	if c := sum.Cancels; c.Sent != perOutcome["cancelled"] || c.Accepted != c.Sent || c.Errors != 0 || len(c.Rejected) != 0 {
		t.Errorf("cancels %+v; %d cancelled rows", c, perOutcome["cancelled"])
	}

	var inv struct{ Available int64 }
	if code := servicetest.GetJSON(t, whURL+"/inventory/load-"+sum.RunID+"-oos", &inv); code != http.StatusOK || inv.Available != 0 {
		t.Errorf("out-of-stock SKU: %d, %d available", code, inv.Available)
	}
}

// 5xx answers and requests without an answer fail the run unless
// --allow-errors; either way the summary is printed.
func TestLoadFailsOnErrors(t *testing.T) {
	t.Parallel()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for _, tc := range []struct {
		url, extra, wantErr string
	}{
		{down.URL, "", "10 answers 5xx and 0 requests without an answer"},
		{gone.URL, "", "0 answers 5xx and 10 requests without an answer"},
		{down.URL, "--allow-errors", ""},
		{gone.URL, "--allow-errors", ""},
	} {
		t.Run(fmt.Sprintf("%s %s", tc.url, tc.extra), func(t *testing.T) {
			var stdout bytes.Buffer
			args := append([]string{"--rate", "10", "--duration", "1s", "--url", tc.url, "--mix", "happy=1"}, strings.Fields(tc.extra)...)
			err := load(context.Background(), args, &stdout, &bytes.Buffer{})
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("load: %v; want %q", err, tc.wantErr)
			}
			if !strings.Contains(stdout.String(), "sent      10 of 10 scheduled") {
				t.Errorf("summary:\n%s", stdout.String())
			}
		})
	}
}

// Bad arguments fail before any request, naming what is wrong.
func TestLoadRejectsBadArguments(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for args, want := range map[string]string{
		"load --rate 0":                    "--rate must be above 0",
		"load --rate -5":                   "--rate must be above 0",
		"load --duration 0s":               "--duration must be above 0",
		"load --max-in-flight -1":          "--max-in-flight must be above 0",
		"load --mix happy=x":               "--mix: weight of happy",
		"load --mix shipped=1":             `unknown outcome "shipped"`,
		"load --url localhost:8080":        `orders URL "localhost:8080" must start with http://`,
		"load --fraud-limit-cents 1":       "fraud limit must be 2 to",
		"load --bogus":                     "flag provided but not defined",
		"load now":                         `unexpected argument "now"`,
		"load --warehouse-url " + gone.URL: "seeding the out-of-stock sku at the warehouse",
	} {
		err := run(context.Background(), strings.Fields(args), &bytes.Buffer{}, time.Now())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("run(%q) = %v; want an error containing %q", args, err, want)
		}
	}
	t.Setenv("FRAUD_LIMIT_CENTS", "lots")
	if err := run(context.Background(), []string{"load"}, &bytes.Buffer{}, time.Now()); err == nil || !strings.Contains(err.Error(), "FRAUD_LIMIT_CENTS") {
		t.Errorf("FRAUD_LIMIT_CENTS=lots: %v", err)
	}
}
