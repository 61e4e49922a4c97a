package metrics

import (
	"fmt"
	"math"
	"sync/atomic"
)

// Counter is a value that only goes up. The zero value is a counter at 0,
// though only counters from a Registry are exposed. Safe for concurrent use;
// Inc and Add do not lock or allocate.
type Counter struct {
	n    atomic.Uint64 // whole increments
	frac atomic.Uint64 // float64 bits of the rest
}

// Inc adds 1.
func (c *Counter) Inc() { c.n.Add(1) }

// Add adds v, which must not be negative or NaN: Add panics, since a counter
// that goes down breaks every rate computed from it.
func (c *Counter) Add(v float64) {
	if !(v >= 0) {
		panic(fmt.Sprintf("metrics: counter add %v: not a non-negative number", v))
	}
	if v < 1<<53 && v == math.Trunc(v) {
		c.n.Add(uint64(v))
		return
	}
	addFloat(&c.frac, v)
}

// Value returns the current value.
func (c *Counter) Value() float64 {
	return float64(c.n.Load()) + math.Float64frombits(c.frac.Load())
}

// CounterVec is a counter family with labels. Safe for concurrent use.
type CounterVec struct {
	vec[Counter]
}

// With returns the counter for the label values, given in the order of the
// label names, creating it at 0 on first use. It panics if the number of
// values is wrong. Keep the result on hot paths: With looks up a map.
func (v *CounterVec) With(labelValues ...string) *Counter { return v.with(labelValues) }

// Delete removes the counter for the label values (a removed service, say)
// and reports whether it existed.
func (v *CounterVec) Delete(labelValues ...string) bool { return v.delete(labelValues) }

// Reset removes all counters of the family.
func (v *CounterVec) Reset() { v.reset() }

func (v *CounterVec) appendTo(b []byte) []byte {
	for _, s := range v.sorted() {
		b = appendSample(b, v.name, "", v.labels, s.values, "", s.m.Value())
	}
	return b
}

// addFloat adds v to the float64 whose bits are in a.
func addFloat(a *atomic.Uint64, v float64) {
	for {
		old := a.Load()
		if a.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}
