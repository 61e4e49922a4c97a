package dockerimg

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// entries reads a tar and returns "name type mode link-or-content" lines.
func entries(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("%s %c %04o", h.Name, h.Typeflag, h.Mode)
		switch h.Typeflag {
		case tar.TypeSymlink, tar.TypeLink:
			line += " -> " + h.Linkname
		case tar.TypeReg:
			line += " " + string(data)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: owner %d:%d, want 0:0", h.Name, h.Uid, h.Gid)
		}
		out = append(out, line)
	}
}

func TestRootfsMirror(t *testing.T) {
	host := t.TempDir()
	// A merged /lib as Debian has it, and a versioned library's alias.
	must(t, os.MkdirAll(filepath.Join(host, "usr/lib/x"), 0o755))
	must(t, os.WriteFile(filepath.Join(host, "usr/lib/x/libz.so.1.2"), []byte("z"), 0o644))
	must(t, os.Symlink("libz.so.1.2", filepath.Join(host, "usr/lib/x/libz.so.1")))
	must(t, os.Symlink("usr/lib", filepath.Join(host, "lib")))
	must(t, os.WriteFile(filepath.Join(host, "usr/lib/x/unrelated"), []byte("no"), 0o644))

	fs := newRootfs()
	fs.dir("/tmp", 0o1777)
	must(t, fs.mirror(filepath.Join(host, "lib/x/libz.so.1")))
	var b bytes.Buffer
	must(t, fs.write(&b))
	// Only what is under host: its own parents are the test machine's.
	h := strings.TrimPrefix(host, "/")
	var got []string
	for _, e := range entries(t, b.Bytes()) {
		if strings.HasPrefix(e, h+"/") && !strings.HasPrefix(e, h+"/ ") || strings.HasPrefix(e, "tmp/ ") {
			got = append(got, e)
		}
	}
	want := []string{
		"tmp/ 5 1777",
		h + "/lib 2 0777 -> usr/lib",
		h + "/usr/ 5 0755",
		h + "/usr/lib/ 5 0755",
		h + "/usr/lib/x/ 5 0755",
		h + "/usr/lib/x/libz.so.1 2 0777 -> libz.so.1.2",
		h + "/usr/lib/x/libz.so.1.2 0 0644 z",
	}
	if !slices.Equal(got, want) {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The same files give the same bytes: the tag is stable.
	var again bytes.Buffer
	must(t, fs.write(&again))
	if !bytes.Equal(b.Bytes(), again.Bytes()) {
		t.Error("a second write of the same root file system differs")
	}

	if err := fs.mirror(filepath.Join(host, "usr/lib/x/missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("mirror of a missing file: %v, want an error naming it", err)
	}
	if err := fs.mirror("relative/path"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("mirror of a relative path: %v, want an error saying it must be absolute", err)
	}
	must(t, os.Symlink("loop", filepath.Join(host, "loop")))
	if err := fs.mirror(filepath.Join(host, "loop")); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("mirror of a link loop: %v, want too many levels of symbolic links", err)
	}
}

func TestDirTar(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "proc/1"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "var/cache/apt/archives/partial"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "var/lib/apt/lists"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "bin/a"), []byte("AAA"), 0o755))
	must(t, os.Link(filepath.Join(root, "bin/a"), filepath.Join(root, "bin/b")))
	must(t, os.Symlink("a", filepath.Join(root, "bin/c")))
	must(t, os.WriteFile(filepath.Join(root, "proc/1/status"), []byte("x"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "var/cache/apt/archives/p.deb"), []byte("deb"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "var/lib/apt/lists/lock"), nil, 0o640))
	must(t, os.WriteFile(filepath.Join(root, "var/lib/apt/lists/deb_Packages"), []byte("list"), 0o644))
	must(t, os.Chmod(filepath.Join(root, "bin/a"), 0o755|os.ModeSetuid))

	var b bytes.Buffer
	must(t, dirTar(&b, root))
	got := entries(t, b.Bytes())
	want := []string{
		"bin/ 5 0755",
		"bin/a 0 4755 AAA",
		"bin/b 1 4755 -> bin/a",
		"bin/c 2 0777 -> a",
		"proc/ 5 0755",
		"var/ 5 0755",
		"var/cache/ 5 0755",
		"var/cache/apt/ 5 0755",
		"var/cache/apt/archives/ 5 0755",
		"var/cache/apt/archives/partial/ 5 0755",
		"var/lib/ 5 0755",
		"var/lib/apt/ 5 0755",
		"var/lib/apt/lists/ 5 0755",
		"var/lib/apt/lists/lock 0 0640 ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSharedLibraries(t *testing.T) {
	if _, err := exec.LookPath("ldd"); err != nil {
		t.Skip("ldd is not on PATH")
	}
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh")
	}
	libs, err := sharedLibraries(context.Background(), sh)
	if err != nil {
		t.Fatal(err)
	}
	var libc bool
	for _, l := range libs {
		if !filepath.IsAbs(l) {
			t.Errorf("%s: not an absolute path", l)
		}
		if _, err := os.Stat(l); err != nil {
			t.Errorf("%s: %v", l, err)
		}
		libc = libc || strings.HasPrefix(filepath.Base(l), "libc.so")
	}
	if !libc || len(libs) < 2 {
		t.Errorf("libraries of %s: %q, want at least the ELF interpreter and libc", sh, libs)
	}

	// A static binary needs none.
	static := filepath.Join(t.TempDir(), "hello")
	cmd := exec.Command("go", "build", "-o", static, "./testdata/hello")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if libs, err := sharedLibraries(context.Background(), static); err != nil || len(libs) != 0 {
		t.Errorf("libraries of a static binary: %q, %v; want none", libs, err)
	}
}

func TestLockKind(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	unlock, err := lockKind(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := lockKind(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second lock while the first is held: %v, want to wait until the deadline", err)
	}
	other, err := lockKind(context.Background(), "other")
	if err != nil {
		t.Fatalf("another kind's lock: %v", err)
	}
	other()
	unlock()
	again, err := lockKind(context.Background(), "k")
	if err != nil {
		t.Fatalf("the lock after its release: %v", err)
	}
	again()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
