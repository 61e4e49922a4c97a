package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestVolumeUsage: files count in whole blocks (at least one), every other
// entry one block, links are not followed, the directory itself is free
// and a missing one holds nothing.
func TestVolumeUsage(t *testing.T) {
	dir := t.TempDir()
	if used, err := VolumeUsage(filepath.Join(dir, "missing")); used != 0 || err != nil {
		t.Fatalf("missing dir = %d, %v", used, err)
	}
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "one"), make([]byte, BlockSize), 0o644)
	os.WriteFile(filepath.Join(dir, "just-over"), make([]byte, BlockSize+1), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.Symlink("/etc", filepath.Join(dir, "sub", "link")) // not followed
	used, err := VolumeUsage(dir)
	if want := int64(BlockSize * (1 + 1 + 2 + 1 + 1)); used != want || err != nil {
		t.Fatalf("VolumeUsage = %d, %v; want %d", used, err, want)
	}
}

// BenchmarkVolumeUsage measures a volume of 1000 small files in 10
// directories: what the node pays before and after each run of a service
// with such a volume.
func BenchmarkVolumeUsage(b *testing.B) {
	dir := b.TempDir()
	for i := range 1000 {
		sub := filepath.Join(dir, fmt.Sprint(i%10))
		os.MkdirAll(sub, 0o755)
		os.WriteFile(filepath.Join(sub, fmt.Sprint(i)), []byte("data"), 0o644)
	}
	for b.Loop() {
		if _, err := VolumeUsage(dir); err != nil {
			b.Fatal(err)
		}
	}
}
