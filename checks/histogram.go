package checks

import (
	"math/bits"
	"time"
)

// Histogram records latencies in fixed memory: log-linear buckets (64 per
// power of two of microseconds, so every value is within 1.6% of its
// bucket), from 1 µs to about 19 hours. 2,368 counters whatever the number
// of samples.
type Histogram struct {
	counts [histSize]uint64
	n      uint64
	max    time.Duration
}

const (
	subBits  = 6 // 64 sub-buckets per power of two
	histSize = (37 - subBits) * (1 << subBits)
)

func bucketOf(us uint64) int {
	if us < 1<<subBits {
		return int(us)
	}
	exp := bits.Len64(us) - 1 - subBits // >= 0
	mant := us >> uint(exp)             // in [64, 128)
	i := (exp+1)<<subBits + int(mant-(1<<subBits))
	if i >= histSize {
		return histSize - 1
	}
	return i
}

// lowerBound is the smallest value (µs) of bucket i.
func lowerBound(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	exp := i>>subBits - 1
	mant := uint64(i&(1<<subBits-1)) + 1<<subBits
	return mant << uint(exp)
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	us := uint64(max(d.Microseconds(), 0))
	h.counts[bucketOf(us)]++
	h.n++
	h.max = max(h.max, d)
}

// Merge adds another histogram's samples.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest sample.
func (h *Histogram) Max() time.Duration { return h.max }

// Percentile returns the value below which p percent of samples fall (the
// upper bound of its bucket, capped at the maximum seen).
func (h *Histogram) Percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(float64(h.n)*p/100 + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if i == histSize-1 {
				return h.max // the last bucket holds everything past the range
			}
			upper := time.Duration(lowerBound(i+1)) * time.Microsecond
			return min(upper, h.max)
		}
	}
	return h.max
}
