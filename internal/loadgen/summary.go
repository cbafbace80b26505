package loadgen

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Summary is what a run did. Its JSON (orderflowctl load --json) has the
// field names below in camel case, durations in milliseconds (Latency) or
// seconds (elapsedSeconds).
type Summary struct {
	RunID    string        `json:"runId"`
	Seed     uint64        `json:"seed"`
	Rate     float64       `json:"targetRate"` // orders per second asked for
	Duration time.Duration `json:"-"`
	Mix      string        `json:"mix"`

	Scheduled int `json:"scheduled"` // requests due by the schedule (fewer when ctx ended it early)
	Sent      int `json:"sent"`      // POST /orders started
	Dropped   int `json:"dropped"`   // due but not sent: MaxInFlight requests were waiting already
	Late      int `json:"late"`      // sent over LateAfter after their scheduled time (the generator was behind)
	Accepted  int `json:"accepted"`  // answered 201 with an order id: the rows written to Out
	// Rejected counts the other answers to POST /orders by status code.
	Rejected map[int]int `json:"rejected"`
	// Errors are requests with no usable answer: refused, reset, timed
	// out, or a 201 without an order id.
	Errors     int    `json:"errors"`
	FirstError string `json:"firstError,omitempty"`

	// Outcomes counts by the outcome each order was shaped for, every
	// outcome of the mix present.
	Outcomes map[Outcome]OutcomeCount `json:"outcomes"`
	Cancels  CancelCount              `json:"cancels"`

	// Latency of POST /orders, from each request's scheduled time to its
	// answer's last byte: what a client arriving on schedule would see,
	// including any time the request waited to be sent (no coordinated
	// omission). ServiceTime is the same from the moment it was sent.
	Latency     Latency `json:"latency"`
	ServiceTime Latency `json:"serviceTime"`
	// LatencyHistogram and ServiceTimeHistogram hold every answered POST,
	// for other quantiles and for merging runs.
	LatencyHistogram     *Histogram `json:"-"`
	ServiceTimeHistogram *Histogram `json:"-"`

	SendSpan time.Duration `json:"-"` // from the first scheduled time to the last send
	Elapsed  time.Duration `json:"-"` // from the first scheduled time to the last answer
	// SentRate is Sent per second of SendSpan: the rate achieved.
	SentRate float64 `json:"sentRate"`
	// AcceptedRate is Accepted per second of SendSpan.
	AcceptedRate float64 `json:"acceptedRate"`
}

// OutcomeCount is how many orders of one outcome were sent and accepted.
type OutcomeCount struct {
	Sent     int `json:"sent"`
	Accepted int `json:"accepted"`
}

// CancelCount is what the cancels of Cancelled orders got: 202, other
// codes, or no answer.
type CancelCount struct {
	Sent     int         `json:"sent"`
	Accepted int         `json:"accepted"` // 202
	Rejected map[int]int `json:"rejected"`
	Errors   int         `json:"errors"`
}

// Latency is a few quantiles of a latency distribution.
type Latency struct {
	P50, P90, P99, Max time.Duration
}

// MarshalJSON writes {"p50Ms":..,"p90Ms":..,"p99Ms":..,"maxMs":..}.
func (l Latency) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		P50 float64 `json:"p50Ms"`
		P90 float64 `json:"p90Ms"`
		P99 float64 `json:"p99Ms"`
		Max float64 `json:"maxMs"`
	}{ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max)})
}

func (l Latency) String() string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s", round(l.P50), round(l.P90), round(l.P99), round(l.Max))
}

// MarshalJSON adds durationSeconds, sendSpanSeconds and elapsedSeconds.
func (s Summary) MarshalJSON() ([]byte, error) {
	type plain Summary // without this method
	return json.Marshal(struct {
		plain
		DurationSeconds float64 `json:"durationSeconds"`
		SendSpanSeconds float64 `json:"sendSpanSeconds"`
		ElapsedSeconds  float64 `json:"elapsedSeconds"`
	}{plain(s), s.Duration.Seconds(), s.SendSpan.Seconds(), s.Elapsed.Seconds()})
}

// Err says how many 5xx answers (to POST /orders or a cancel) and
// transport errors the run met; nil when none. Dropped and late requests
// and 4xx answers are not errors here: the summary reports them.
func (s Summary) Err() error {
	var fivexx int
	for _, codes := range []map[int]int{s.Rejected, s.Cancels.Rejected} {
		for code, n := range codes {
			if code >= 500 {
				fivexx += n
			}
		}
	}
	errs := s.Errors + s.Cancels.Errors
	if fivexx == 0 && errs == 0 {
		return nil
	}
	msg := fmt.Sprintf("%d answers 5xx and %d requests without an answer", fivexx, errs)
	if s.FirstError != "" {
		msg += " (first: " + s.FirstError + ")"
	}
	return errors.New(msg)
}

// WriteText writes the summary for people, e.g.
//
//	run 5f3c9a10  seed 42  200/s for 30s  mix happy=80,declined=5,flaky=5,fraud=3,out-of-stock=2,cancelled=5
//	sent      6000 of 6000 scheduled, 200.0/s; dropped 0, late 0
//	accepted  5998 (201), 199.9/s
//	rejected  422: 2
//	errors    0
//	cancels   301 sent: 202 301
//	outcomes  happy 4790/4790, declined 300/300, ... (accepted/sent)
//	latency   p50 12ms  p90 20ms  p99 45ms  max 120ms  (POST /orders, from the scheduled time)
//	service   p50 11ms  p90 19ms  p99 44ms  max 119ms  (from the send)
func (s Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s  seed %d  %g/s for %s  mix %s\n", s.RunID, s.Seed, s.Rate, s.Duration, s.Mix)
	fmt.Fprintf(&b, "sent      %d of %d scheduled, %.1f/s; dropped %d, late %d\n", s.Sent, s.Scheduled, s.SentRate, s.Dropped, s.Late)
	fmt.Fprintf(&b, "accepted  %d (201), %.1f/s\n", s.Accepted, s.AcceptedRate)
	fmt.Fprintf(&b, "rejected  %s\n", codes(s.Rejected))
	fmt.Fprintf(&b, "errors    %d", s.Errors)
	if s.FirstError != "" {
		fmt.Fprintf(&b, " (first: %s)", s.FirstError)
	}
	b.WriteString("\n")
	c := s.Cancels
	fmt.Fprintf(&b, "cancels   %d sent: 202 %d", c.Sent, c.Accepted)
	if len(c.Rejected) > 0 {
		fmt.Fprintf(&b, ", %s", codes(c.Rejected))
	}
	fmt.Fprintf(&b, ", errors %d\n", c.Errors)
	var outcomes []string
	for _, o := range Outcomes {
		if n, ok := s.Outcomes[o]; ok {
			outcomes = append(outcomes, fmt.Sprintf("%s %d/%d", o, n.Accepted, n.Sent))
		}
	}
	fmt.Fprintf(&b, "outcomes  %s (accepted/sent)\n", strings.Join(outcomes, ", "))
	fmt.Fprintf(&b, "latency   %s  (POST /orders, from the scheduled time)\n", s.Latency)
	fmt.Fprintf(&b, "service   %s  (from the send)\n", s.ServiceTime)
	_, err := io.WriteString(w, b.String())
	return err
}

// Snapshot is the state of a run, given to Config.Progress once a second.
type Snapshot struct {
	Elapsed   time.Duration // since the first scheduled time
	Sent      int
	Accepted  int // 201
	Client4xx int
	Server5xx int
	Errors    int
	Dropped   int
	InFlight  int
	Rate      float64 // requests sent per second since the previous snapshot
}

// String is the progress line, e.g.
//
//	5s  sent 1000  accepted 998  4xx 2  5xx 0  errors 0  dropped 0  in flight 4  200/s
func (s Snapshot) String() string {
	return fmt.Sprintf("%s  sent %d  accepted %d  4xx %d  5xx %d  errors %d  dropped %d  in flight %d  %.0f/s",
		s.Elapsed.Round(time.Second), s.Sent, s.Accepted, s.Client4xx, s.Server5xx, s.Errors, s.Dropped, s.InFlight, s.Rate)
}

// codes writes "409: 2, 422: 1", or "none".
func codes(m map[int]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d: %d", code, m[code]))
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// round keeps three significant digits or so: 12.3ms, 1.23s, 456µs.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
