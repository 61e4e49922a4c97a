package metrics

import (
	"math"
	"strconv"
	"sync/atomic"
	"time"
)

// DurationBuckets returns the default histogram buckets, in seconds, suited
// to invocation durations from 50µs (a warm wasm call) to 60s (a long
// process run): 50µs, 100µs, 250µs, 500µs, 1ms, 2.5ms, 5ms, 10ms, 25ms,
// 50ms, 100ms, 250ms, 500ms, 1s, 2.5s, 5s, 10s, 30s, 60s. Each call returns
// a new slice.
func DurationBuckets() []float64 {
	return []float64{
		0.00005, 0.0001, 0.00025, 0.0005,
		0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
		0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
	}
}

// Histogram counts observations in fixed buckets and keeps their sum. Only
// histograms from a Registry exist. Safe for concurrent use; Observe does
// not lock or allocate. A scrape concurrent with observations may see the
// sum and the counts of slightly different moments; _count always equals
// the +Inf bucket.
type Histogram struct {
	upper  []float64       // upper bounds, shared by the family
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum    atomic.Uint64   // float64 bits
}

func newHistogram(upper []float64) *Histogram {
	return &Histogram{upper: upper, counts: make([]atomic.Uint64, len(upper)+1)}
}

// Observe records v; NaN is counted in the +Inf bucket only.
func (h *Histogram) Observe(v float64) {
	lo, hi := 0, len(h.upper)
	if v != v {
		lo = hi
	}
	for lo < hi { // first bucket whose upper bound is ≥ v
		m := int(uint(lo+hi) >> 1)
		if h.upper[m] < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	h.counts[lo].Add(1)
	addFloat(&h.sum, v)
}

// ObserveDuration records d in seconds.
func (h *Histogram) ObserveDuration(d time.Duration) { h.Observe(d.Seconds()) }

// HistogramVec is a histogram family with labels; all its histograms share
// the family's buckets. Safe for concurrent use.
type HistogramVec struct {
	vec[Histogram]
	upper []float64
}

// With returns the histogram for the label values, given in the order of the
// label names, creating it empty on first use. It panics if the number of
// values is wrong. Keep the result on hot paths: With looks up a map.
func (v *HistogramVec) With(labelValues ...string) *Histogram { return v.with(labelValues) }

// Delete removes the histogram for the label values and reports whether it
// existed.
func (v *HistogramVec) Delete(labelValues ...string) bool { return v.delete(labelValues) }

// Reset removes all histograms of the family.
func (v *HistogramVec) Reset() { v.reset() }

func (v *HistogramVec) appendTo(b []byte) []byte {
	les := make([]string, len(v.upper)+1)
	for i, u := range v.upper {
		les[i] = string(appendFloat(nil, u))
	}
	les[len(v.upper)] = "+Inf"
	for _, s := range v.sorted() {
		h := s.m
		var cum uint64
		for i := range h.counts {
			cum += h.counts[i].Load()
			b = appendSeries(b, v.name, "_bucket", v.labels, s.values, les[i])
			b = strconv.AppendUint(b, cum, 10)
			b = append(b, '\n')
		}
		b = appendSample(b, v.name, "_sum", v.labels, s.values, "", math.Float64frombits(h.sum.Load()))
		b = appendSeries(b, v.name, "_count", v.labels, s.values, "")
		b = strconv.AppendUint(b, cum, 10)
		b = append(b, '\n')
	}
	return b
}
