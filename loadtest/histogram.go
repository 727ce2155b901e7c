package loadtest

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Latencies are kept in a log-linear histogram of microseconds: values below
// 64 µs exactly, above that 64 buckets per power of two, so a reported
// percentile is within 0.8 % of the true sample. Recording is lock-free, so
// ten thousand fans can record the same broadcast at once; histograms of
// several processes merge by adding counts.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histMaxExp  = 40 // values up to 2^40 µs (12 days); larger ones are clamped
	histBuckets = histSub + (histMaxExp-histSubBits)*histSub
)

// histogram is a latency histogram; the zero value is empty and ready.
// It is safe for concurrent use.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sumUS  atomic.Uint64
	maxUS  atomic.Uint64
}

// bucketOf returns the bucket index of a value in microseconds.
func bucketOf(us uint64) int {
	if us < histSub {
		return int(us)
	}
	shift := bits.Len64(us) - histSubBits - 1
	if shift >= histMaxExp-histSubBits {
		return histBuckets - 1
	}
	m := us >> uint(shift) // in [64, 128)
	return histSub + shift*histSub + int(m-histSub)
}

// bucketValue returns the value a bucket stands for: the value itself below
// 64 µs, the middle of the bucket's range above.
func bucketValue(i int) float64 {
	if i < histSub {
		return float64(i)
	}
	shift := (i - histSub) / histSub
	m := uint64(histSub + (i-histSub)%histSub)
	lo := m << uint(shift)
	hi := (m+1)<<uint(shift) - 1
	return (float64(lo) + float64(hi)) / 2
}

// record adds one sample; negative durations count as zero.
func (h *histogram) record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.recordN(us, 1)
}

func (h *histogram) recordN(us, n uint64) {
	h.counts[bucketOf(us)].Add(n)
	h.n.Add(n)
	h.sumUS.Add(us * n)
	for {
		m := h.maxUS.Load()
		if us <= m || h.maxUS.CompareAndSwap(m, us) {
			return
		}
	}
}

// count returns the number of samples.
func (h *histogram) count() uint64 { return h.n.Load() }

// quantile returns the q-quantile (0 < q ≤ 1) in microseconds by the
// nearest-rank method: the smallest recorded value with at least q·n samples
// at or below it. It returns 0 for an empty histogram.
func (h *histogram) quantile(q float64) float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			v := bucketValue(i)
			if m := float64(h.maxUS.Load()); v > m {
				v = m // the top bucket's middle may lie above the real maximum
			}
			return v
		}
	}
	return float64(h.maxUS.Load())
}

// histData is a histogram on the wire between a worker and the coordinator:
// sparse [bucket, count] pairs.
type histData struct {
	Buckets [][2]uint64 `json:"buckets"`
	SumUS   uint64      `json:"sum_us"`
	MaxUS   uint64      `json:"max_us"`
}

// data exports h.
func (h *histogram) data() histData {
	d := histData{SumUS: h.sumUS.Load(), MaxUS: h.maxUS.Load(), Buckets: [][2]uint64{}}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			d.Buckets = append(d.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return d
}

// merge adds d's samples to h. Buckets out of range are ignored.
func (h *histogram) merge(d histData) {
	for _, b := range d.Buckets {
		if b[0] >= histBuckets {
			continue
		}
		h.counts[b[0]].Add(b[1])
		h.n.Add(b[1])
	}
	h.sumUS.Add(d.SumUS)
	for {
		m := h.maxUS.Load()
		if d.MaxUS <= m || h.maxUS.CompareAndSwap(m, d.MaxUS) {
			return
		}
	}
}

// latency is one histogram as the report shows it, in milliseconds.
type latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// summary returns the report's view of h.
func (h *histogram) summary() latency {
	return latency{
		Count: h.count(),
		P50:   round3(h.quantile(0.50) / 1000),
		P99:   round3(h.quantile(0.99) / 1000),
		Max:   round3(float64(h.maxUS.Load()) / 1000),
	}
}

// round3 rounds to three decimals (microseconds when the unit is ms).
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
