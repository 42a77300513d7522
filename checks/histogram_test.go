package checks

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestHistogramPercentilesAreWithinItsPrecision(t *testing.T) {
	var h Histogram
	var all []time.Duration
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		d := time.Duration(r.ExpFloat64()*5000) * time.Microsecond // mean 5 ms, long tail
		h.Record(d)
		all = append(all, d)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for _, p := range []float64{50, 95, 99, 99.9} {
		exact := all[int(float64(len(all))*p/100)-1]
		got := h.Percentile(p)
		assert.InEpsilon(t, float64(exact), float64(got), 0.035, "p%v: exact %v, histogram %v", p, exact, got)
	}
	assert.Equal(t, uint64(100000), h.Count())
	assert.Equal(t, all[len(all)-1], h.Max())
}

func TestHistogramBuckets(t *testing.T) {
	for _, us := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 123456, 1 << 35} {
		i := bucketOf(us)
		assert.LessOrEqual(t, lowerBound(i), us, "%d", us)
		assert.Greater(t, lowerBound(i+1), us, "%d", us)
	}
	var h Histogram
	h.Record(100 * time.Hour) // past the range: counted in the last bucket
	assert.Equal(t, 100*time.Hour, h.Percentile(100))
	var empty Histogram
	assert.Zero(t, empty.Percentile(99))
}
