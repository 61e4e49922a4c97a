//go:build race

package node_test

// raceDetector says the tests run under the race detector, where every
// step is several times slower: tests that pass many messages to show a
// count pass fewer there (the count is shown by the pass without it).
const raceDetector = true
