package loadgen

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Contiguous, in order, every value inside its own bucket, up to the
	// largest duration.
	for _, v := range []uint64{0, 1, 255, 256, 257, 511, 512, 1<<20 + 12345, 1<<62 + 1, 1<<63 - 1} {
		i := bucketOf(v)
		if i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, beyond %d buckets", v, i, numBuckets)
		}
		if high := bucketHigh(i); v > high || (i > 0 && v <= bucketHigh(i-1)) {
			t.Errorf("%d in bucket %d of (%d, %d]", v, i, bucketHigh(i-1), high)
		}
	}
	for i := 1; i < numBuckets; i++ {
		if bucketOf(bucketHigh(i-1)+1) != i {
			t.Fatalf("bucket %d does not start right after bucket %d", i, i-1)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Max() != 0 || empty.Count() != 0 {
		t.Errorf("empty histogram: p50 %s, max %s, count %d", empty.Quantile(0.5), empty.Max(), empty.Count())
	}

	// Small values are exact.
	var small Histogram
	for v := range 200 {
		small.Record(time.Duration(v))
	}
	if got := small.Quantile(0.5); got != 99 {
		t.Errorf("p50 of 0..199 ns = %d", got)
	}

	// Against the exact quantiles of a sorted slice: never below, at most
	// 1/128 above; the extremes exact.
	var h Histogram
	rng := rand.New(rand.NewPCG(1, 2))
	exact := make([]time.Duration, 10_000)
	for i := range exact {
		exact[i] = time.Duration(rng.ExpFloat64() * float64(20*time.Millisecond))
		h.Record(exact[i])
	}
	slices.Sort(exact)
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		rank := max(int(float64(len(exact))*q+0.999999), 1)
		want := exact[rank-1]
		got := h.Quantile(q)
		if got < want || float64(got-want) > float64(want)/128 {
			t.Errorf("q %g: %s, exact %s", q, got, want)
		}
	}
	if h.Quantile(1) != exact[len(exact)-1] || h.Max() != exact[len(exact)-1] || h.Quantile(0) != exact[0] {
		t.Errorf("extremes: q0 %s q1 %s max %s; exact %s, %s", h.Quantile(0), h.Quantile(1), h.Max(), exact[0], exact[len(exact)-1])
	}

	// Merging two halves is recording all.
	var a, b Histogram
	for i, d := range exact {
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	if a.Count() != h.Count() || a.Latency() != h.Latency() || a.Quantile(0) != h.Quantile(0) {
		t.Errorf("merged %d %v, all %d %v", a.Count(), a.Latency(), h.Count(), h.Latency())
	}

	var neg Histogram
	neg.Record(-time.Second)
	if neg.Max() != 0 || neg.Count() != 1 {
		t.Errorf("a negative duration: max %s, count %d", neg.Max(), neg.Count())
	}
}
