package node

import "testing"

// TestRates: runs and actions are counted against their per-minute caps,
// and actions given back leave room for others.
func TestRates(t *testing.T) {
	var r rates
	for i := range 2 {
		if ok, n := r.startRun(2); !ok || n != i+1 {
			t.Fatalf("run %d: startRun = %v, %d; want it counted as %d", i, ok, n, i+1)
		}
	}
	if ok, n := r.startRun(2); ok || n != 2 {
		t.Errorf("third run: startRun = %v, %d; want refused with 2 in the window", ok, n)
	}
	a, ok, used := r.takeActions(3, 5)
	if !ok || used != 0 {
		t.Fatalf("takeActions(3) = %v, %d; want taken from an empty window", ok, used)
	}
	if _, ok, used := r.takeActions(3, 5); ok || used != 3 {
		t.Errorf("takeActions(3) over 3 of 5 = %v, %d; want refused", ok, used)
	}
	r.giveBack(a)
	if _, ok, used := r.takeActions(5, 5); !ok || used != 0 {
		t.Errorf("takeActions(5) after giving 3 back = %v, %d; want taken", ok, used)
	}
}
