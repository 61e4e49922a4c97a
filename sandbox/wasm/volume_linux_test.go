package wasm

import (
	"os"
	"path/filepath"
	"testing"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// newVolumeFS is a volume of size bytes in a fresh directory, measured.
func newVolumeFS(t *testing.T, size int64) (*volumeFS, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "vol")
	os.Mkdir(dir, 0o700)
	vols, _, err := openVolumes([]sandbox.Volume{{Name: "out", Dir: dir, Path: "/out", Size: size}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vols.close)
	if err := vols.measure(); err != nil {
		t.Fatal(err)
	}
	return &volumeFS{root: vols.roots[0], q: vols.quotas[0]}, dir
}

// TestVolumeFSSize: writes, truncates, creates and mkdirs that would take
// a volume past its size fail, and what it holds on disk never passes the
// size; removing and truncating give room back.
func TestVolumeFSSize(t *testing.T) {
	v, dir := newVolumeFS(t, 4*sandbox.BlockSize)
	f, en := v.OpenFile("a", experimentalsys.O_CREAT|experimentalsys.O_WRONLY, 0o644)
	if en != 0 {
		t.Fatal(en)
	}
	chunk := make([]byte, 1000)
	written := 0
	for {
		n, en := f.Write(chunk)
		written += n
		if en != 0 {
			if en != errFull {
				t.Fatalf("write past the size: %v, want %v", en, errFull)
			}
			break
		}
		if written > 1<<20 {
			t.Fatal("writes never failed")
		}
	}
	f.Close()
	if used, _ := sandbox.VolumeUsage(dir); used > 4*sandbox.BlockSize || written < 3*sandbox.BlockSize {
		t.Fatalf("volume holds %d bytes after writing %d; size %d", used, written, 4*sandbox.BlockSize)
	}
	if _, en := v.OpenFile("b", experimentalsys.O_CREAT|experimentalsys.O_WRONLY, 0o644); en != errFull {
		t.Fatalf("create in a full volume = %v", en)
	}
	if en := v.Mkdir("d", 0o755); en != errFull {
		t.Fatalf("mkdir in a full volume = %v", en)
	}
	// Pwrite far past the end, and truncate up, are growth too.
	f, _ = v.OpenFile("a", experimentalsys.O_RDWR, 0)
	if _, en := f.Pwrite([]byte("x"), 1<<20); en != errFull {
		t.Fatalf("pwrite past the size = %v", en)
	}
	if en := f.Truncate(1 << 20); en != errFull {
		t.Fatalf("truncate past the size = %v", en)
	}
	if en := f.Truncate(0); en != 0 {
		t.Fatal(en)
	}
	f.Close()
	if en := v.Mkdir("d", 0o755); en != 0 {
		t.Fatalf("mkdir after a truncate = %v", en)
	}
	if en := v.Unlink("a"); en != 0 {
		t.Fatal(en)
	}
	if got, want := v.q.used.Load(), int64(sandbox.BlockSize); got != want {
		t.Fatalf("used = %d after unlink, want %d (the directory)", got, want)
	}
}

// TestVolumeFSStaysInside: neither '..' nor a link, relative or absolute,
// leads out of the volume; hard links are refused.
func TestVolumeFSStaysInside(t *testing.T) {
	v, dir := newVolumeFS(t, 1<<20)
	secret := filepath.Join(filepath.Dir(dir), "secret")
	os.WriteFile(secret, []byte("host"), 0o600)
	if en := v.Symlink("../secret", "rel"); en != 0 {
		t.Fatal(en)
	}
	if en := v.Symlink(secret, "abs"); en != 0 {
		t.Fatal(en)
	}
	for _, p := range []string{"../secret", "rel", "abs", "sub/../../secret"} {
		if f, en := v.OpenFile(p, experimentalsys.O_RDONLY, 0); en == 0 {
			buf := make([]byte, 8)
			n, _ := f.Read(buf)
			f.Close()
			t.Errorf("OpenFile(%q) opened %q outside the volume", p, buf[:n])
		}
		if _, en := v.Stat(p); en == 0 {
			t.Errorf("Stat(%q) reached outside the volume", p)
		}
	}
	if en := v.Rename("rel", "../moved"); en == 0 {
		t.Error("Rename out of the volume succeeded")
	}
	os.WriteFile(filepath.Join(dir, "in"), []byte("x"), 0o644)
	if en := v.Link("in", "in2"); en != experimentalsys.EPERM {
		t.Errorf("Link = %v, want EPERM", en)
	}
	// A link inside that stays inside is followed.
	if en := v.Symlink("in", "ok"); en != 0 {
		t.Fatal(en)
	}
	f, en := v.OpenFile("ok", experimentalsys.O_RDONLY, 0)
	if en != 0 {
		t.Fatalf("a link inside the volume: %v", en)
	}
	f.Close()
}
