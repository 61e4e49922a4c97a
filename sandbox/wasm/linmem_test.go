package wasm

import (
	"runtime"
	"testing"
)

// TestLinearMemoryMoves: a memory grows on the Go heap up to heapMemoryMax,
// then moves to a reservation of its cap (on Linux) with its bytes intact,
// the new part zero and writable; a grow past the cap is refused and
// recorded; Free gives the reservation back.
func TestLinearMemoryMoves(t *testing.T) {
	const mib = 1 << 20
	m := &linearMemory{limit: 64 * mib}
	m.Allocate(mib, 1<<32)
	b := m.Reallocate(mib)
	for i := range b {
		b[i] = byte(i % 251)
	}
	m.Reallocate(heapMemoryMax)
	if m.reserved != nil {
		t.Fatal("a memory of heapMemoryMax moved off the heap")
	}
	b = m.Reallocate(heapMemoryMax + 64<<10)
	if runtime.GOOS == "linux" && m.reserved == nil {
		t.Fatal("a memory past heapMemoryMax did not move to a reservation")
	}
	for i := range mib {
		if b[i] != byte(i%251) {
			t.Fatalf("byte %d = %d after the move, want %d", i, b[i], byte(i%251))
		}
	}
	b = m.Reallocate(48 * mib)
	if len(b) != 48*mib || m.size != 48*mib {
		t.Fatalf("len %d, size %d after a grow to 48 MiB", len(b), m.size)
	}
	for _, i := range []int{mib, heapMemoryMax, 48*mib - 1} {
		if b[i] != 0 {
			t.Fatalf("byte %d of the grown memory = %d, want 0", i, b[i])
		}
		b[i] = 7
	}
	if b[0] != 0 || b[1] != 1 {
		t.Fatal("the first bytes changed with the grow")
	}
	if m.Reallocate(64*mib+64<<10) != nil || !m.refused {
		t.Fatal("a grow past the cap was not refused and recorded")
	}
	m.Free()
	if m.reserved != nil || m.buf != nil {
		t.Fatal("Free kept the memory")
	}
	m.Free() // twice is harmless
}
