package andromeda

import (
	"errors"
	"math"
)

// ErrUsageRefused is Usage's error when the node refused a report: a bad
// name or amount, or a new name past the run's 32. The node counts refused
// reports on the run (counters_dropped).
var ErrUsageRefused = errors.New("andromeda: usage report refused")

// Usage reports amount more of the usage counter name for the invocation
// being served: the node sums each name's reports over the run, and the
// sums land on the run's usage and in its signed usage record. name is 1 to
// 64 characters of [a-z0-9_.-] starting with a letter ("rows",
// "tokens.in"); amount is a finite number ≥ 0; a run holds at most 32
// names. Call it from the handler, during an invocation: a report outside
// one is dropped.
//
// On wasip1, Usage calls the host function andromeda.usage (docs/wasm-abi.md,
// "Host functions"); a module that calls it imports that function and so
// runs only on nodes that provide it. Built for another platform (the
// process driver's exec services, tests), Usage checks its arguments and
// does nothing else: a native service reports usage through runtimes/go.
func Usage(name string, amount float64) error {
	if math.IsNaN(amount) || math.IsInf(amount, 0) || amount < 0 || name == "" || len(name) > 64 {
		return ErrUsageRefused
	}
	if !reportUsage(name, amount) {
		return ErrUsageRefused
	}
	return nil
}
