package store_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/store"
)

// TestKeepInput: a run keeps its input up to MaxInputBytes and its size
// in any case.
func TestKeepInput(t *testing.T) {
	var small, large store.Run
	small.KeepInput(json.RawMessage(`{"a":1}`))
	if string(small.Input) != `{"a":1}` || small.InputBytes != 7 {
		t.Errorf("small input: %s, %d bytes", small.Input, small.InputBytes)
	}
	big := json.RawMessage(`"` + strings.Repeat("x", store.MaxInputBytes) + `"`)
	large.KeepInput(big)
	if large.Input != nil || large.InputBytes != len(big) {
		t.Errorf("input over %d bytes: kept %d bytes, size %d; want none kept, size %d", store.MaxInputBytes, len(large.Input), large.InputBytes, len(big))
	}
}
