package worker

import (
	"context"
	"math"
	"testing"

	"github.com/andromeda-runner/andromeda/contract"
)

// TestUsage: Usage sends a usage message with the invocation's id before
// its result; outside an invocation, and for an amount JSON cannot hold,
// it sends nothing.
func TestUsage(t *testing.T) {
	Usage(context.Background(), "rows", 1) // outside an invocation: nothing, no panic
	s := start(t, func(ctx context.Context, in contract.Input) (contract.Output, error) {
		Usage(ctx, "rows", 1200)
		Usage(ctx, "rows", math.NaN())
		Usage(ctx, "bytes.out", 5.5e6)
		return contract.Output{Noop: "counted"}, nil
	})
	s.init()
	s.send(`{"type":"invoke","id":"7","input":{}}`)
	var got []string
	for {
		m := s.recv()
		if m.Type == TypeResult {
			break
		}
		if m.Type != TypeUsage || m.ID != "7" {
			t.Fatalf("message %+v, want usage of invocation 7", m)
		}
		got = append(got, string(m.Counters))
	}
	if len(got) != 2 || got[0] != `{"rows":1200}` || got[1] != `{"bytes.out":5500000}` {
		t.Errorf("usage messages = %q, want rows 1200 and bytes.out 5500000", got)
	}
}
