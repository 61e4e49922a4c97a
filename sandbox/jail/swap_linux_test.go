package jail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSwapNote: a host with swap whose memory cgroups cannot limit it
// (v1 without memory.memsw.limit_in_bytes, v2 without memory.swap.max)
// gets a note saying a memory limit caps resident memory only; a host
// without swap, or with the file, gets none.
func TestSwapNote(t *testing.T) {
	v1, v2 := t.TempDir(), t.TempDir()
	for _, tc := range []struct {
		name string
		swap int64
		c    controller
		file string // made in the controller's parent first; "" none
		want string // in the note; "" no note
	}{
		{"v1 without memsw", 2 << 30, controller{parent: v1}, "", "2048 MiB of swap and its cgroups do not account it (no memory.memsw.limit_in_bytes)"},
		{"v2 without swap.max", 1 << 30, controller{v2: true, parent: v2}, "", "no memory.swap.max): a memory limit caps resident memory only"},
		{"no swap", 0, controller{parent: v1}, "", ""},
		{"v1 with memsw", 2 << 30, controller{parent: v1}, "memory.memsw.limit_in_bytes", ""},
		{"v2 with swap.max", 2 << 30, controller{v2: true, parent: v2}, "memory.swap.max", ""},
	} {
		if tc.file != "" {
			if err := os.WriteFile(filepath.Join(tc.c.parent, tc.file), []byte("max\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got := swapNote(tc.swap, tc.c)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: note %q, want %q", tc.name, got, tc.want)
		}
	}
	if hostSwap() < 0 {
		t.Errorf("hostSwap() = %d", hostSwap())
	}
}
