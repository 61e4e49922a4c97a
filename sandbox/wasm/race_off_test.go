//go:build !race

package wasm

// raceEnabled says the tests run under the race detector, which slows the
// host's code several times over: bounds on wall time widen under it.
const raceEnabled = false
