package metrics

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
)

// vec is a family's series, one per distinct tuple of label values.
type vec[M any] struct {
	*desc
	newM func() *M

	mu     sync.RWMutex
	series map[string]*series[M] // by key(label values)
}

// series is one child of a family: its label values and its metric.
type series[M any] struct {
	values []string
	m      *M
}

func newVec[M any](d *desc, newM func() *M) vec[M] {
	return vec[M]{desc: d, newM: newM, series: make(map[string]*series[M])}
}

// with returns the child for values, creating it on first use. Looking up
// an existing child does not allocate when the key fits in 256 bytes.
func (v *vec[M]) with(values []string) *M {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("metrics: %s: %d label values for %d label names", v.name, len(values), len(v.labels)))
	}
	var buf [256]byte
	k := appendKey(buf[:0], values)
	v.mu.RLock()
	s, ok := v.series[string(k)]
	v.mu.RUnlock()
	if ok {
		return s.m
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.series[string(k)]; ok {
		return s.m
	}
	s = &series[M]{values: slices.Clone(values), m: v.newM()}
	v.series[string(k)] = s
	return s.m
}

// delete removes the child for values and reports whether there was one.
func (v *vec[M]) delete(values []string) bool {
	if len(values) != len(v.labels) {
		return false
	}
	var buf [256]byte
	k := appendKey(buf[:0], values)
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.series[string(k)]; !ok {
		return false
	}
	delete(v.series, string(k))
	return true
}

// reset removes all children.
func (v *vec[M]) reset() {
	v.mu.Lock()
	defer v.mu.Unlock()
	clear(v.series)
}

// sorted returns the children sorted by label values.
func (v *vec[M]) sorted() []*series[M] {
	v.mu.RLock()
	out := make([]*series[M], 0, len(v.series))
	for _, s := range v.series {
		out = append(out, s)
	}
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b *series[M]) int { return slices.Compare(a.values, b.values) })
	return out
}

// appendKey appends an unambiguous encoding of values: each one prefixed by
// its length.
func appendKey(b []byte, values []string) []byte {
	for _, s := range values {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}
