package metrics

import (
	"math"
	"sync/atomic"
)

// Gauge is a value that goes up and down. The zero value is a gauge at 0,
// though only gauges from a Registry are exposed. Safe for concurrent use;
// its methods do not lock or allocate.
type Gauge struct {
	bits atomic.Uint64 // float64 bits
}

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds v, which may be negative.
func (g *Gauge) Add(v float64) { addFloat(&g.bits, v) }

// Inc adds 1.
func (g *Gauge) Inc() { g.Add(1) }

// Dec subtracts 1.
func (g *Gauge) Dec() { g.Add(-1) }

// Value returns the current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// GaugeVec is a gauge family with labels. Safe for concurrent use.
type GaugeVec struct {
	vec[Gauge]
}

// With returns the gauge for the label values, given in the order of the
// label names, creating it at 0 on first use. It panics if the number of
// values is wrong. Keep the result on hot paths: With looks up a map.
func (v *GaugeVec) With(labelValues ...string) *Gauge { return v.with(labelValues) }

// Delete removes the gauge for the label values and reports whether it
// existed.
func (v *GaugeVec) Delete(labelValues ...string) bool { return v.delete(labelValues) }

// Reset removes all gauges of the family.
func (v *GaugeVec) Reset() { v.reset() }

func (v *GaugeVec) appendTo(b []byte) []byte {
	for _, s := range v.sorted() {
		b = appendSample(b, v.name, "", v.labels, s.values, "", s.m.Value())
	}
	return b
}
