// Package loadgen drives the orders API at a fixed rate, open loop, with a
// mix of orders shaped for each end docs/design.md describes (paid and shipped,
// declined, flaky, fraud, out of stock, cancelled), and writes down every
// accepted order with the outcome it was shaped for, so that a checker can
// later see that each reached its end. orderflowctl load, the benchmarks
// and the chaos tool call Run.
//
// Guarantees:
//   - Open loop: request n is due at start + n/Rate and is started then in
//     its own goroutine, whether or not earlier requests have been
//     answered; a late generator (a starved CPU) starts the overdue ones at
//     once instead of shifting the schedule. A slow server therefore does
//     not lower the number of requests sent, and latency is measured from
//     the scheduled time as well as from the send (no coordinated
//     omission). At most MaxInFlight requests wait at a time; one due
//     beyond that is dropped and counted, never delayed.
//   - Every POST /orders answered 201 with an order id is written to Out as
//     one line "<orderId>\t<outcome>\n", and only those: Summary.Accepted
//     equals the lines written.
//   - The same Seed gives the same sequence of outcomes, customers, SKUs
//     and amounts. Names that must not collide between runs (SKUs,
//     correlation ids, idempotency keys) carry the RunID, fresh per run
//     unless set.
//
// Not provided: retries (a failed request is counted, not repeated),
// checking where the orders end up (that is the checker's job, with Out),
// and more than one outcome per order.
package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultOrdersURL       = "http://localhost:8080"
	DefaultWarehouseURL    = "http://localhost:8082"
	DefaultRate            = 100
	DefaultDuration        = 10 * time.Second
	DefaultFraudLimitCents = 1_000_000
	DefaultTimeout         = 10 * time.Second
	// DefaultMaxInFlight is the least MaxInFlight: 1000, or two seconds of
	// requests at a higher rate.
	DefaultMaxInFlight = 1000
	// DefaultMaxConns is the most connections the default client opens to
	// each host; requests beyond wait in the client for one (their wait
	// counts in Latency and ServiceTime).
	DefaultMaxConns = 512
)

// LateAfter is how far behind its scheduled time a request may be sent
// before it counts as Late.
const LateAfter = 10 * time.Millisecond

// maxFraudLimitCents is the highest limit a one-line order can exceed:
// 1000 units at the highest unit price.
const maxFraudLimitCents = maxQuantity*maxUnitPriceCents - 1

// Config configures a run. Zero fields take the defaults above.
type Config struct {
	OrdersURL string // base URL of the orders API
	// WarehouseURL is the warehouse's base URL, used only to seed the
	// out-of-stock SKU (PUT /inventory/{sku}, 0 available) when the mix
	// has out-of-stock orders.
	WarehouseURL string
	Rate         float64       // orders per second
	Duration     time.Duration // how long requests are started
	Mix          Mix           // default DefaultMix()
	// FraudLimitCents is the payments service's FRAUD_LIMIT_CENTS: fraud
	// orders total one cent or more above it, the others stay within it.
	FraudLimitCents int64
	Seed            uint64 // 0: a random seed, reported in the summary
	RunID           string // 0-9a-z, at most 16 characters; default 8 random hex digits
	// Idempotency sends an Idempotency-Key (the correlation id) with
	// every order.
	Idempotency bool
	// SKUs, when above 0, makes every order but the out-of-stock ones buy
	// one of SKUs fixed SKUs ("load-sku-<n>", the same in every run), drawn
	// uniformly: a hot set of stock rows, as the choreography benchmark
	// wants (with WAREHOUSE_DEFAULT_STOCK raised to match). 0 rotates
	// fresh SKUs so that none runs out of the default stock.
	SKUs        int
	MaxInFlight int           // default max(DefaultMaxInFlight, 2·Rate)
	Timeout     time.Duration // per request, answer included
	// Out gets "<orderId>\t<outcome>\n" for every accepted order, nil
	// for none. Writes are serialized.
	Out io.Writer
	// Progress, when set, is called once a second with the run's state,
	// from a goroutine of Run's.
	Progress func(Snapshot)
	// Client sends the requests; default one with keep-alive and
	// DefaultMaxConns connections per host.
	Client *http.Client
}

func (c *Config) setDefaults() {
	c.OrdersURL = strings.TrimSuffix(cmpOr(c.OrdersURL, DefaultOrdersURL), "/")
	c.WarehouseURL = strings.TrimSuffix(cmpOr(c.WarehouseURL, DefaultWarehouseURL), "/")
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Mix == nil {
		c.Mix = DefaultMix()
	}
	if c.FraudLimitCents == 0 {
		c.FraudLimitCents = DefaultFraudLimitCents
	}
	if c.Seed == 0 {
		c.Seed = mathrand.Uint64() | 1
	}
	if c.RunID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		c.RunID = hex.EncodeToString(b[:])
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = max(DefaultMaxInFlight, int(2*c.Rate))
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Validate reports the first setting that cannot be used.
func (c *Config) Validate() error {
	for name, u := range map[string]string{"orders URL": c.OrdersURL, "warehouse URL": c.WarehouseURL} {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("%s %q must start with http:// or https://", name, u)
		}
	}
	switch {
	case c.Rate < 0:
		return errors.New("rate must be above 0")
	case c.Duration < 0:
		return errors.New("duration must be above 0")
	case c.FraudLimitCents < 2 || c.FraudLimitCents > maxFraudLimitCents:
		return fmt.Errorf("fraud limit must be 2 to %d cents", int64(maxFraudLimitCents))
	case len(c.RunID) > 16 || strings.Trim(c.RunID, "0123456789abcdefghijklmnopqrstuvwxyz") != "":
		return fmt.Errorf("run id %q must be 1 to 16 of 0-9a-z", c.RunID)
	case c.MaxInFlight < 0:
		return errors.New("max in flight must be above 0")
	case c.Timeout < 0:
		return errors.New("timeout must be above 0")
	}
	return c.Mix.validate()
}

// Run seeds the out-of-stock SKU when the mix has such orders, then sends
// orders on the schedule for cfg.Duration, waits for the answers (each
// within cfg.Timeout) and returns what happened. When ctx ends first, no
// more requests are started, those in flight are still answered and
// written to Out, and the summary comes with ctx's error. The error is
// also set when the configuration is bad, the seeding failed (no summary
// then), or writing to Out failed; 5xx answers and transport errors are
// not errors of Run: see Summary.Err.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}
	g := newGenerator(cfg)
	defer g.closeIdle()
	if cfg.Mix[OutOfStock] > 0 {
		if err := g.seedOutOfStock(ctx); err != nil {
			return Summary{}, err
		}
	}
	g.start = time.Now()
	stopProgress := g.reportProgress()
	ctxErr := g.schedule(ctx)
	g.inFlight.Wait()
	stopProgress()
	return g.summary(), errors.Join(ctxErr, g.outErr)
}

// generator is one run: its schedule, its requests and their tally.
type generator struct {
	cfg      Config
	client   *http.Client
	ownedTr  *http.Transport // the default client's, closed at the end
	slots    chan struct{}   // one per request in flight
	inFlight sync.WaitGroup
	start    time.Time

	mu       sync.Mutex // guards what follows
	sum      Summary
	latency  *Histogram
	service  *Histogram
	lastSend time.Time
	c4xx     int
	c5xx     int
	outErr   error
}

func newGenerator(cfg Config) *generator {
	g := &generator{
		cfg:     cfg,
		client:  cfg.Client,
		slots:   make(chan struct{}, cfg.MaxInFlight),
		latency: &Histogram{},
		service: &Histogram{},
		sum: Summary{
			RunID: cfg.RunID, Seed: cfg.Seed, Rate: cfg.Rate, Duration: cfg.Duration, Mix: cfg.Mix.String(),
			Rejected: map[int]int{}, Outcomes: map[Outcome]OutcomeCount{},
			Cancels: CancelCount{Rejected: map[int]int{}},
		},
	}
	for o, w := range cfg.Mix {
		if w > 0 {
			g.sum.Outcomes[o] = OutcomeCount{}
		}
	}
	if g.client == nil {
		g.ownedTr = http.DefaultTransport.(*http.Transport).Clone()
		g.ownedTr.MaxConnsPerHost = DefaultMaxConns
		g.ownedTr.MaxIdleConns = 2 * DefaultMaxConns // orders and warehouse
		g.ownedTr.MaxIdleConnsPerHost = DefaultMaxConns
		g.client = &http.Client{Transport: g.ownedTr}
	}
	return g
}

func (g *generator) closeIdle() {
	if g.ownedTr != nil {
		g.ownedTr.CloseIdleConnections()
	}
}

// seedOutOfStock sets the run's out-of-stock SKU to 0 available.
func (g *generator) seedOutOfStock(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	sku := outOfStockSKU(g.cfg.RunID)
	url := g.cfg.WarehouseURL + "/inventory/" + sku
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader(`{"available":0}`))
	if err != nil {
		return fmt.Errorf("seeding the out-of-stock sku: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("seeding the out-of-stock sku at the warehouse: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("seeding the out-of-stock sku: PUT %s: %s %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// schedule starts request n at start + n/Rate until Duration has passed or
// ctx ends (then it returns ctx's error).
func (g *generator) schedule(ctx context.Context) error {
	plan := newPlanner(g.cfg.Seed, g.cfg.Mix, g.cfg.RunID, g.cfg.FraudLimitCents)
	plan.skus = g.cfg.SKUs
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// Requests outlive ctx so that an order accepted after it ended still
	// reaches Out; each is bounded by Timeout.
	reqCtx := context.WithoutCancel(ctx)
	for n := 0; ; n++ {
		offset := time.Duration(float64(n) * float64(time.Second) / g.cfg.Rate)
		if offset >= g.cfg.Duration {
			return nil
		}
		due := g.start.Add(offset)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}
		o := plan.next(n)
		g.mu.Lock()
		g.sum.Scheduled++
		g.mu.Unlock()
		select {
		case g.slots <- struct{}{}:
		default:
			g.mu.Lock()
			g.sum.Dropped++
			g.mu.Unlock()
			continue
		}
		g.inFlight.Add(1)
		go func() {
			defer g.inFlight.Done()
			defer func() { <-g.slots }()
			g.place(reqCtx, o, due)
		}()
	}
}

// place posts o, due at due, tallies the answer, writes an accepted order
// to Out, and cancels it when that is its outcome.
func (g *generator) place(ctx context.Context, o order, due time.Time) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	tag := "load-" + g.cfg.RunID + "-" + strconv.Itoa(o.n)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.cfg.OrdersURL+"/orders", bytes.NewReader(o.body))
	if err != nil {
		g.failed(fmt.Errorf("post /orders: %w", err))
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Correlation-ID", tag)
	if g.cfg.Idempotency {
		req.Header.Set("Idempotency-Key", tag)
	}
	sent := time.Now()
	g.sending(o, due, sent)
	resp, err := g.client.Do(req)
	if err != nil {
		g.failed(err)
		return
	}
	var created struct {
		ID string `json:"id"`
	}
	if resp.StatusCode == http.StatusCreated {
		err = json.NewDecoder(resp.Body).Decode(&created)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // the rest, so the connection is reused
	resp.Body.Close()
	answered := time.Now()
	if resp.StatusCode == http.StatusCreated && (err != nil || created.ID == "") {
		g.failed(fmt.Errorf("post /orders: 201 without an order id: %v", err))
		return
	}
	g.answered(o, resp.StatusCode, answered.Sub(due), answered.Sub(sent))
	if resp.StatusCode != http.StatusCreated {
		return
	}
	outcome := o.outcome
	if outcome == Cancelled && !g.cancelOrder(ctx, created.ID, tag) {
		outcome = CancelUnconfirmed
	}
	g.accepted(created.ID, outcome)
}

// cancelOrder posts the order's cancel and tallies the answer; true when
// it was 202.
func (g *generator) cancelOrder(ctx context.Context, id, tag string) bool {
	code, err := g.cancelRequest(ctx, id, tag)
	g.mu.Lock()
	defer g.mu.Unlock()
	c := &g.sum.Cancels
	c.Sent++
	switch {
	case err != nil:
		c.Errors++
		g.firstError(fmt.Errorf("cancel: %w", err))
	case code == http.StatusAccepted:
		c.Accepted++
		return true
	default:
		c.Rejected[code]++
	}
	return false
}

func (g *generator) cancelRequest(ctx context.Context, id, tag string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.cfg.OrdersURL+"/orders/"+id+"/cancel", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Correlation-ID", tag)
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// sending tallies a request about to be sent.
func (g *generator) sending(o order, due, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sum.Sent++
	oc := g.sum.Outcomes[o.outcome]
	oc.Sent++
	g.sum.Outcomes[o.outcome] = oc
	if now.Sub(due) > LateAfter {
		g.sum.Late++
	}
	if now.After(g.lastSend) {
		g.lastSend = now
	}
}

// answered tallies an answer to POST /orders.
func (g *generator) answered(o order, code int, latency, service time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.latency.Record(latency)
	g.service.Record(service)
	switch {
	case code == http.StatusCreated:
		g.sum.Accepted++
		oc := g.sum.Outcomes[o.outcome]
		oc.Accepted++
		g.sum.Outcomes[o.outcome] = oc
		return
	case code >= 500:
		g.c5xx++
	case code >= 400:
		g.c4xx++
	}
	g.sum.Rejected[code]++
}

// failed tallies a POST /orders without a usable answer.
func (g *generator) failed(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sum.Errors++
	g.firstError(err)
}

// firstError keeps the first error's text; g.mu is held.
func (g *generator) firstError(err error) {
	if g.sum.FirstError == "" {
		g.sum.FirstError = err.Error()
	}
}

// accepted writes an accepted order to Out.
func (g *generator) accepted(id string, outcome Outcome) {
	if g.cfg.Out == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.outErr != nil {
		return
	}
	if _, err := fmt.Fprintf(g.cfg.Out, "%s\t%s\n", id, outcome); err != nil {
		g.outErr = fmt.Errorf("writing accepted orders: %w", err)
	}
}

// reportProgress calls cfg.Progress once a second until the returned
// function is called, which waits for it to stop.
func (g *generator) reportProgress() (stop func()) {
	if g.cfg.Progress == nil {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		lastSent, lastAt := 0, g.start
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				s := g.snapshot(now)
				s.Rate = float64(s.Sent-lastSent) / now.Sub(lastAt).Seconds()
				lastSent, lastAt = s.Sent, now
				g.cfg.Progress(s)
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func (g *generator) snapshot(now time.Time) Snapshot {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Snapshot{
		Elapsed: now.Sub(g.start), Sent: g.sum.Sent, Accepted: g.sum.Accepted,
		Client4xx: g.c4xx, Server5xx: g.c5xx, Errors: g.sum.Errors + g.sum.Cancels.Errors,
		Dropped: g.sum.Dropped, InFlight: len(g.slots),
	}
}

// summary is the tally once every request has been answered.
func (g *generator) summary() Summary {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.sum
	s.Elapsed = time.Since(g.start)
	s.SendSpan = g.lastSend.Sub(g.start)
	if s.Sent > 0 {
		// The span of n sends on schedule is (n-1)/Rate: add one interval
		// so that a run that kept up reports Rate.
		span := (s.SendSpan + time.Duration(float64(time.Second)/g.cfg.Rate)).Seconds()
		s.SentRate, s.AcceptedRate = float64(s.Sent)/span, float64(s.Accepted)/span
	}
	s.Latency, s.ServiceTime = g.latency.Latency(), g.service.Latency()
	s.LatencyHistogram, s.ServiceTimeHistogram = g.latency, g.service
	return s
}
