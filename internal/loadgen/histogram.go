package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Buckets: exact below 256 ns, then 128 per power of two, so a bucket is
// at most 1/128 (0.8%) of its values wide from 1 ns to the largest
// time.Duration.
const (
	subBits    = 7
	subBuckets = 1 << subBits
	numBuckets = (64 - subBits) * subBuckets
)

// Histogram counts durations in logarithmic buckets (the HDR histogram
// idea): a quantile is at most 0.8% above the exact one however many
// durations it holds, in a fixed 57 KiB, and two histograms merge by
// adding counts. The zero value is empty and ready to use; it is not safe
// for concurrent use.
type Histogram struct {
	counts   [numBuckets]uint64
	n        uint64
	min, max time.Duration
}

// Record adds one duration; a negative one counts as 0.
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.n++
}

// Merge adds every duration of o.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
}

// Count is how many durations were recorded.
func (h *Histogram) Count() int { return int(h.n) }

// Max is the largest duration recorded, exactly; 0 when empty.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the duration at or below which a fraction q (0 to 1) of
// the recorded ones lie: the highest value of the bucket holding the
// ceil(q·n)-th smallest, kept between the exact minimum and maximum (which
// q 0 and 1 return). 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	if rank == 1 {
		return h.min
	}
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(max(time.Duration(bucketHigh(i)), h.min), h.max)
		}
	}
	return h.max
}

// Latency is p50, p90, p99 and the maximum.
func (h *Histogram) Latency() Latency {
	return Latency{P50: h.Quantile(0.50), P90: h.Quantile(0.90), P99: h.Quantile(0.99), Max: h.max}
}

// bucketOf is v's bucket: v itself below 2·subBuckets, then subBuckets
// buckets per power of two, indexed by v's top subBits+1 bits.
func bucketOf(v uint64) int {
	if v < 2*subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)<<subBits + int(v>>shift) - subBuckets
}

// bucketHigh is the largest value of bucket i.
func bucketHigh(i int) uint64 {
	if i < 2*subBuckets {
		return uint64(i)
	}
	shift := i>>subBits - 1
	top := uint64(i&(subBuckets-1) + subBuckets)
	return (top+1)<<shift - 1
}
