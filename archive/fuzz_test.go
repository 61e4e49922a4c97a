package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzUnpack feeds arbitrary bytes to Unpack, both as they are and gzipped
// (so the fuzzer also reaches the tar layer). Unpack must not panic, must
// leave nothing but dst next to it, must agree with Inspect, and what it
// unpacks must digest the same through DigestDir.
func FuzzUnpack(f *testing.F) {
	src := makeDir(f, serviceDir)
	packed, err := Pack(src)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(packed)
	f.Add(tarOf(f, file("a", "a"), symlink("l", "a"), hardlink("h", "a")))
	for _, ents := range [][]ent{
		{file("../x", "x")},
		{symlink("link", ".."), file("link/x", "x")},
		{symlink("here", "."), symlink("out", "here/../x")},
		{hardlink("h", "/etc/passwd")},
		{special("tty", tar.TypeChar)},
		{dir("d/"), withMode(file("d/s", "x"), 0o4755), file("d/s", "y")},
	} {
		f.Add(tgz(f, ents...))
		f.Add(tarOf(f, ents...))
	}
	f.Add([]byte{})
	f.Add([]byte{0x1f, 0x8b})

	lim := Limits{MaxCompressed: 1 << 20, MaxSize: 1 << 20, MaxFileSize: 256 << 10, MaxEntries: 64, MaxRatio: 100, RatioFloor: 64 << 10}
	f.Fuzz(func(t *testing.T, data []byte) {
		check(t, data, lim)
		check(t, gz(t, data), lim)
	})
}

func check(t *testing.T, data []byte, lim Limits) {
	base := t.TempDir()
	parent := filepath.Join(base, "p")
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(parent, "svc")
	info, err := Unpack(bytes.NewReader(data), dst, lim)
	if err != nil && !errors.Is(err, ErrUnsafe) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrFormat) {
		t.Fatalf("Unpack error %v is none of the archive's kinds", err)
	}
	for dir, want := range map[string]string{base: "p", parent: "svc"} {
		entries, rerr := os.ReadDir(dir)
		if rerr != nil {
			t.Fatal(rerr)
		}
		for _, e := range entries {
			if e.Name() != want || err != nil && dir == parent {
				t.Fatalf("Unpack (error %v) left %s in %s", err, e.Name(), dir)
			}
		}
	}
	iinfo, ierr := Inspect(bytes.NewReader(data), lim)
	if (err == nil) != (ierr == nil) || err != nil && err.Error() != ierr.Error() || info != iinfo {
		t.Fatalf("Unpack = %+v, %v; Inspect = %+v, %v", info, err, iinfo, ierr)
	}
	if err != nil {
		return
	}
	skipped := false
	filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := d.Info()
		if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 || fi.Mode()&fs.ModeSymlink == 0 && fi.Mode()&0o002 != 0 {
			t.Errorf("%s: mode %v", p, fi.Mode())
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			// A symlink must not lead out of dst, even dangling.
			target, _ := os.Readlink(p)
			if filepath.IsAbs(target) {
				t.Errorf("%s: absolute symlink %s", p, target)
			}
			if real, err := filepath.EvalSymlinks(p); err == nil {
				if rel, err := filepath.Rel(dst, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
					t.Errorf("%s: symlink resolves to %s, outside dst", p, real)
				}
			}
		}
		if ignored(d.Name()) {
			skipped = true
		}
		return nil
	})
	if skipped {
		return
	}
	if got, err := DigestDir(dst); err != nil || got != info.Digest {
		t.Fatalf("DigestDir(unpacked) = %v, %v, want %v", got, err, info.Digest)
	}
}
