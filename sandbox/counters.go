package sandbox

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
)

// MaxCounters is the most distinct counter names one invocation may report;
// reports of further names are dropped and counted.
const MaxCounters = 32

// MaxCounterName is the longest counter name, in bytes.
const MaxCounterName = 64

// CheckCounter checks one counter report: name is 1 to MaxCounterName
// characters of [a-z0-9_.-] starting with a letter ("rows",
// "tokens.in"), and value a finite number not below zero. The error names
// the rule.
func CheckCounter(name string, value float64) error {
	ok := len(name) >= 1 && len(name) <= MaxCounterName
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-')
	}
	if !ok {
		return fmt.Errorf("counter name %.80q: want 1 to %d characters of [a-z0-9_.-], starting with a letter", name, MaxCounterName)
	}
	if math.IsNaN(value) || math.IsInf(value, 0) || value < 0 {
		return fmt.Errorf("counter %s: value %v: must be a finite number ≥ 0", name, value)
	}
	return nil
}

// errTooMany is Add's error for a name past MaxCounters.
var errTooMany = errors.New("too many counters")

// Counters sums the usage counters one invocation reports. The zero value
// is ready to use; safe for concurrent use.
type Counters struct {
	mu      sync.Mutex
	sums    map[string]float64
	dropped int
}

// Add adds value to counter name. A report CheckCounter refuses, one of a
// new name when MaxCounters names are held, or one whose sum would
// overflow is dropped, counted, and returned as an error; it never panics.
func (c *Counters) Add(name string, value float64) error {
	err := CheckCounter(name, value)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		_, held := c.sums[name]
		switch sum := c.sums[name] + value; {
		case !held && len(c.sums) >= MaxCounters:
			err = fmt.Errorf("counter %s: %w: at most %d names per run", name, errTooMany, MaxCounters)
		case math.IsInf(sum, 0):
			err = fmt.Errorf("counter %s: the sum overflows", name)
		default:
			if c.sums == nil {
				c.sums = map[string]float64{}
			}
			c.sums[name] = sum
			return nil
		}
	}
	c.dropped++
	return err
}

// Drop counts a report that could not be read at all (a counter whose
// value is not a number).
func (c *Counters) Drop() {
	c.mu.Lock()
	c.dropped++
	c.mu.Unlock()
}

// Fill sets u's Counters (a copy; nil when none) and CountersDropped. A nil
// c leaves u as it is.
func (c *Counters) Fill(u *Usage) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sums) > 0 {
		u.Counters = make(map[string]float64, len(c.sums))
		for k, v := range c.sums {
			u.Counters[k] = v
		}
	}
	u.CountersDropped = c.dropped
}

// countersKey is the context key of an invocation's Counters.
type countersKey struct{}

// WithCounters returns ctx carrying c, for drivers whose guests report
// counters through a host function that only sees the call's context.
func WithCounters(ctx context.Context, c *Counters) context.Context {
	return context.WithValue(ctx, countersKey{}, c)
}

// CountersOf returns the Counters ctx carries, or nil.
func CountersOf(ctx context.Context) *Counters {
	c, _ := ctx.Value(countersKey{}).(*Counters)
	return c
}
