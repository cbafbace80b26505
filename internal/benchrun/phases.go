package benchrun

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/orderflow/orderflow/internal/loadgen"
)

// latencyResult is the latency phase: POST 201 → PaymentCaptured recorded
// by orders, for the orders it placed.
type latencyResult struct {
	sum           loadgen.Summary
	orders        int
	captured      int // orders with PaymentCaptured recorded
	p50, p99, max time.Duration
}

// latencyPhase places orders at LatencyRate for LatencyFor, waits for
// their PaymentCaptured (up to a minute) and then for the system to
// complete them, so the sustained phase starts on an idle system.
func (r *run) latencyPhase(ctx context.Context) (latencyResult, error) {
	cfg := r.cfg
	r.logf("latency phase: %.0f orders/s for %s", cfg.LatencyRate, cfg.LatencyFor)
	r.mark(fmt.Sprintf("%.0f/s", cfg.LatencyRate))
	sum, orders, err := r.load(ctx, cfg.LatencyRate, cfg.LatencyFor)
	r.mark("stop")
	if err != nil {
		return latencyResult{}, fmt.Errorf("load: %w", err)
	}
	res := latencyResult{sum: sum, orders: len(orders)}
	ids := orderIDs(orders)
	var lat []time.Duration
	deadline := time.Now().Add(time.Minute)
	for {
		if lat, err = captureLatencies(ctx, r.stack.databases["orders"], ids); err != nil {
			return res, fmt.Errorf("orders database: %w", err)
		}
		if len(lat) >= len(ids) || time.Now().After(deadline) || !r.stack.running() {
			break
		}
		if err := sleep(ctx, time.Second); err != nil {
			return res, err
		}
	}
	res.captured = len(lat)
	if n := len(lat); n > 0 {
		res.p50, res.p99, res.max = lat[n/2], lat[n*99/100], lat[n-1]
	}
	r.logf("  %d orders accepted at %.0f/s, %d captured: p50 %v p99 %v", res.orders, sum.AcceptedRate, res.captured, res.p50, res.p99)
	if _, _, err := r.waitComplete(ctx, ids, time.Now().Add(time.Minute)); err != nil {
		return res, err
	}
	return res, nil
}

// sustainedResult is the sustained phase.
type sustainedResult struct {
	sum         loadgen.Summary
	orders      int
	stopped     time.Time // when the load stopped
	lateAtGrace int       // not complete Grace after the load stopped
	incomplete  int       // still not complete when the run stopped waiting
	waited      time.Duration
	last        time.Duration // the last completion, from the load's stop
	slope       float64       // backlog growth over the load's second half, records/s; NaN: too few samples
	atStop      float64       // backlog when the load stopped
}

// sustainedPhase places orders at SustainedRate for SustainedFor, then
// waits Grace and, while some are incomplete, up to Settle from the
// load's stop.
func (r *run) sustainedPhase(ctx context.Context) (sustainedResult, error) {
	cfg := r.cfg
	r.logf("sustained phase: %.0f orders/s for %s", cfg.SustainedRate, cfg.SustainedFor)
	r.mark(fmt.Sprintf("%.0f/s", cfg.SustainedRate))
	start := time.Now()
	sum, orders, err := r.load(ctx, cfg.SustainedRate, cfg.SustainedFor)
	res := sustainedResult{sum: sum, orders: len(orders), stopped: start.Add(sum.SendSpan)}
	r.mark("stop")
	if err != nil {
		return res, fmt.Errorf("load: %w", err)
	}
	r.logf("  offered %.0f/s, accepted %.0f/s (%d orders), dropped %d, errors %d",
		sum.SentRate, sum.AcceptedRate, sum.Accepted, sum.Dropped, sum.Errors)
	samples := r.sampler.all()
	res.slope = backlogSlope(samples, start.Add(cfg.SustainedFor/2), res.stopped)
	if s, ok := r.sampler.last(); ok {
		res.atStop = s.backlog()
	}
	if err := sleep(ctx, time.Until(res.stopped.Add(cfg.Grace))); err != nil {
		return res, err
	}
	r.mark(fmt.Sprintf("+%s", cfg.Grace))
	ids := orderIDs(orders)
	done, waited, err := r.waitComplete(ctx, ids, res.stopped.Add(cfg.Settle))
	if err != nil {
		return res, err
	}
	res.waited = waited.Sub(res.stopped).Round(time.Second)
	res.incomplete = len(ids) - len(done)
	res.lateAtGrace = res.incomplete
	for _, at := range done {
		if at.After(res.stopped.Add(cfg.Grace)) {
			res.lateAtGrace++
		}
		res.last = max(res.last, at.Sub(res.stopped))
	}
	r.logf("  %d incomplete at +%s, %d after +%s; the last complete at +%s",
		res.lateAtGrace, cfg.Grace, res.incomplete, res.waited, res.last.Round(100*time.Millisecond))
	return res, nil
}

// waitComplete polls the databases until every order of ids is complete,
// deadline passes or the stack stopped; it returns the completions it
// last read and when it read them.
func (r *run) waitComplete(ctx context.Context, ids []string, deadline time.Time) (map[string]time.Time, time.Time, error) {
	lastSaid := time.Now()
	for {
		done, err := completions(ctx, r.stack.databases["orders"], r.stack.databases["email"], ids)
		read := time.Now()
		if err != nil {
			return nil, read, err
		}
		if len(done) == len(ids) || read.After(deadline) {
			return done, read, nil
		}
		if !r.stack.running() {
			return nil, read, errStackDown
		}
		if time.Since(lastSaid) >= 10*time.Second {
			lastSaid = time.Now()
			r.logf("  waiting: %d of %d orders complete", len(done), len(ids))
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return nil, read, err
		}
	}
}

// backlogSlope is the least-squares slope, in records per second, of the
// backlog (consumer lag and outbox rows) over the samples from from to
// to; NaN with fewer than three.
func backlogSlope(samples []sample, from, to time.Time) float64 {
	var xs, ys []float64
	for _, s := range samples {
		if s.At.Before(from) || s.At.After(to) || len(s.Services) == 0 {
			continue
		}
		xs = append(xs, s.At.Sub(from).Seconds())
		ys = append(ys, s.backlog())
	}
	return slope(xs, ys)
}

func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if len(xs) < 3 {
		return math.NaN()
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy = sx+xs[i], sy+ys[i]
		sxx, sxy = sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return math.NaN()
	}
	return (n*sxy - sx*sy) / d
}

// newHTTPClient is the sampler's client: a few keep-alive connections per
// service.
func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}
