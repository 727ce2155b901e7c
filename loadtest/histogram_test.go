package loadtest

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// exactQuantile is the nearest-rank quantile of sorted samples.
func exactQuantile(sorted []uint64, q float64) float64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return float64(sorted[max(rank, 1)-1])
}

func TestBucketsCoverValuesTightly(t *testing.T) {
	prev := -1
	for _, us := range []uint64{0, 1, 63, 64, 65, 127, 128, 129, 1000, 4095, 4096, 1 << 20, 1<<39 + 12345} {
		i := bucketOf(us)
		if i < prev {
			t.Errorf("bucketOf(%d) = %d, below the bucket of a smaller value (%d)", us, i, prev)
		}
		prev = i
		v := bucketValue(i)
		if rel := math.Abs(v-float64(us)) / math.Max(float64(us), 1); rel > 0.008 {
			t.Errorf("bucketValue(bucketOf(%d)) = %v: %.2f%% off", us, v, rel*100)
		}
	}
	if got := bucketOf(math.MaxUint64); got != histBuckets-1 {
		t.Errorf("bucketOf(max) = %d, want the last bucket %d", got, histBuckets-1)
	}
}

func TestQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tests := []struct {
		name string
		gen  func() uint64
		n    int
	}{
		{"constant", func() uint64 { return 1500 }, 100},
		{"small exact values", func() uint64 { return rng.Uint64N(64) }, 1000},
		{"uniform 1-100 ms", func() uint64 { return 1000 + rng.Uint64N(99000) }, 10000},
		{"exponential around 5 ms", func() uint64 { return uint64(rng.ExpFloat64() * 5000) }, 20000},
		{"bimodal with a slow tail", func() uint64 {
			if rng.IntN(100) == 0 {
				return 2_000_000 + rng.Uint64N(1_000_000)
			}
			return 200 + rng.Uint64N(300)
		}, 5000},
		{"one sample", func() uint64 { return 777 }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			samples := make([]uint64, tt.n)
			for i := range samples {
				samples[i] = tt.gen()
				h.record(time.Duration(samples[i]) * time.Microsecond)
			}
			sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
			if h.count() != uint64(tt.n) {
				t.Fatalf("count = %d, want %d", h.count(), tt.n)
			}
			for _, q := range []float64{0.5, 0.9, 0.99, 1} {
				got, want := h.quantile(q), exactQuantile(samples, q)
				if math.Abs(got-want) > math.Max(want*0.008, 0.5) {
					t.Errorf("q%.2f = %v µs, exact %v µs", q, got, want)
				}
			}
			s := h.summary()
			if s.Max != round3(float64(samples[len(samples)-1])/1000) {
				t.Errorf("max = %v ms, want %v", s.Max, float64(samples[len(samples)-1])/1000)
			}
		})
	}
}

func TestEmptyHistogram(t *testing.T) {
	var h histogram
	if s := h.summary(); s != (latency{}) {
		t.Errorf("empty summary = %+v, want zeros", s)
	}
}

func TestNegativeDurationCountsAsZero(t *testing.T) {
	var h histogram
	h.record(-time.Second)
	if h.count() != 1 || h.quantile(1) != 0 {
		t.Errorf("count %d, max %v; want 1 sample at 0", h.count(), h.quantile(1))
	}
}

func TestHistogramMergeEqualsCombined(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var a, b, all histogram
	for i := range 5000 {
		d := time.Duration(rng.ExpFloat64()*float64(20*time.Millisecond)) + time.Microsecond
		all.record(d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	var m histogram
	m.merge(a.data())
	m.merge(b.data())
	// through JSON-shaped data again, as workers send it
	if m.summary() != all.summary() {
		t.Errorf("merged %+v, combined %+v", m.summary(), all.summary())
	}
	if m.sumUS.Load() != all.sumUS.Load() {
		t.Errorf("sum %d, want %d", m.sumUS.Load(), all.sumUS.Load())
	}
	m.merge(histData{Buckets: [][2]uint64{{histBuckets + 5, 9}}})
	if m.count() != all.count() {
		t.Errorf("an out-of-range bucket changed the count")
	}
}
