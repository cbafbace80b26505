package benchrun

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// promSample is one line of the Prometheus text format.
type promSample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// parseMetrics reads the Prometheus text exposition format (what every
// service's /metrics serves). Comments and lines it cannot read are
// skipped: a figure missing from a scrape shows as a gap, not an error.
func parseMetrics(r io.Reader) ([]promSample, error) {
	var out []promSample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if s, ok := parseMetricLine(line); ok {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

// parseMetricLine reads `name{a="x",b="y"} 12.5 [timestamp]`.
func parseMetricLine(line string) (promSample, bool) {
	s := promSample{Labels: map[string]string{}}
	rest := line
	if i := strings.IndexAny(line, "{ "); i < 0 {
		return s, false
	} else {
		s.Name, rest = line[:i], line[i:]
	}
	if strings.HasPrefix(rest, "{") {
		end, ok := parseLabels(rest[1:], s.Labels)
		if !ok {
			return s, false
		}
		rest = rest[1+end:]
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return s, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, false
	}
	s.Value = v
	return s, true
}

// parseLabels reads `a="x",b="y"}` into m and returns the index just past
// the closing brace.
func parseLabels(s string, m map[string]string) (int, bool) {
	i := 0
	for i < len(s) {
		switch s[i] {
		case '}':
			return i + 1, true
		case ',', ' ':
			i++
			continue
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 || i+eq+1 >= len(s) || s[i+eq+1] != '"' {
			return 0, false
		}
		name := s[i : i+eq]
		j := i + eq + 2
		var val strings.Builder
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
				switch s[j] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[j])
				}
				continue
			}
			val.WriteByte(s[j])
		}
		if j >= len(s) {
			return 0, false
		}
		m[name] = val.String()
		i = j + 1
	}
	return 0, false
}

// sum adds the values of every sample named name.
func sum(samples []promSample, name string) float64 {
	var t float64
	for _, s := range samples {
		if s.Name == name {
			t += s.Value
		}
	}
	return t
}

// The series the sampler keeps, per service.
const (
	metricLag       = "orderflow_consumer_lag"
	metricHandled   = "orderflow_consumer_handled_total"
	metricOutbox    = "orderflow_outbox_pending"
	metricPublished = "orderflow_relay_published_total"
	metricQueue     = "orderflow_amqp_queue_messages"
	metricTimers    = "orderflow_timers_pending"
)

var sampledMetrics = []string{metricLag, metricHandled, metricOutbox, metricPublished, metricQueue, metricTimers}

// sample is the system's state at one moment: each service's sampled
// metrics (absent when its scrape failed), and the run's own counters.
type sample struct {
	At       time.Time
	Services map[string]map[string]float64 // service → metric → sum
	Accepted int                           // POSTs answered 201 so far, every phase
	Emails   int                           // messages the SMTP sink accepted so far
}

// total is the sum of metric over the services scraped.
func (s sample) total(metric string) float64 {
	var t float64
	for _, m := range s.Services {
		t += m[metric]
	}
	return t
}

// backlog is what waits anywhere: every consumer group's lag and every
// outbox's unpublished rows.
func (s sample) backlog() float64 { return s.total(metricLag) + s.total(metricOutbox) }

// sampler scrapes every service's /metrics once a second.
type sampler struct {
	urls     map[string]string // service → base URL
	counters func() (accepted, emails int)
	client   *http.Client

	mu      sync.Mutex
	samples []sample
}

// run samples until ctx is done.
func (s *sampler) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		s.sampleOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *sampler) sampleOnce(ctx context.Context) {
	at := time.Now()
	smp := sample{At: at, Services: map[string]map[string]float64{}}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for name, base := range s.urls {
		wg.Go(func() {
			m, err := s.scrape(ctx, base)
			if err != nil {
				return
			}
			mu.Lock()
			smp.Services[name] = m
			mu.Unlock()
		})
	}
	wg.Wait()
	smp.Accepted, smp.Emails = s.counters()
	s.mu.Lock()
	s.samples = append(s.samples, smp)
	s.mu.Unlock()
}

// scrape reads the sampled metrics of one service, each summed over its
// labels.
func (s *sampler) scrape(ctx context.Context, base string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", base, resp.Status)
	}
	all, err := parseMetrics(resp.Body)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, name := range sampledMetrics {
		m[name] = sum(all, name)
	}
	return m, nil
}

// all is a copy of the samples so far.
func (s *sampler) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}

// last is the latest sample, ok false before the first.
func (s *sampler) last() (sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return sample{}, false
	}
	return s.samples[len(s.samples)-1], true
}
