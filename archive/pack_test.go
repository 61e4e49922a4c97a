package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// makeDir builds a directory from specs: "file <content>", "exec <content>",
// "dir", "symlink <target>" or "hardlink <path>" (to a file made earlier;
// specs are applied in path order).
func makeDir(t testing.TB, specs map[string]string) string {
	t.Helper()
	root := t.TempDir()
	paths := make([]string, 0, len(specs))
	for p := range specs {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		kind, arg, _ := strings.Cut(specs[p], " ")
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch kind {
		case "file":
			err = os.WriteFile(full, []byte(arg), 0o644)
		case "exec":
			err = os.WriteFile(full, []byte(arg), 0o755)
		case "dir":
			err = os.MkdirAll(full, 0o755)
		case "symlink":
			err = os.Symlink(arg, full)
		case "hardlink":
			err = os.Link(filepath.Join(root, arg), full)
		default:
			t.Fatalf("bad spec %q", specs[p])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// serviceDir is a directory exercising every kind of node Pack stores.
var serviceDir = map[string]string{
	"andromeda.yaml":                       "file name: svc\n",
	"main.wasm":                            "exec \x00asm\x01\x00\x00\x00",
	"lib/util.js":                          "file module.exports = 1\n",
	"lib/deep/x.txt":                       "file deep\n",
	"lib/a-b.txt":                          "file sorts before lib/deep in byte order\n",
	"empty":                                "dir",
	"link":                                 "symlink lib/util.js",
	"libdir":                               "symlink lib",
	"lib/up":                               "symlink ../andromeda.yaml",
	"data/orig":                            "file shared\n",
	"data/twin":                            "hardlink data/orig",
	"dangling":                             "symlink lib/missing",
	"unicode-ñ.txt":                        "file ñ\n",
	"spaces in name":                       "file s\n",
	"lib/long/" + strings.Repeat("n", 120): "file long name\n",
}

// serviceTree is what serviceDir unpacks to, as readTree reports it.
var serviceTree = map[string]string{
	"andromeda.yaml":                       "file 644 name: svc\n",
	"main.wasm":                            "file 755 \x00asm\x01\x00\x00\x00",
	"lib":                                  "dir",
	"lib/util.js":                          "file 644 module.exports = 1\n",
	"lib/deep":                             "dir",
	"lib/deep/x.txt":                       "file 644 deep\n",
	"lib/a-b.txt":                          "file 644 sorts before lib/deep in byte order\n",
	"empty":                                "dir",
	"link":                                 "symlink lib/util.js",
	"libdir":                               "symlink lib",
	"lib/up":                               "symlink ../andromeda.yaml",
	"data":                                 "dir",
	"data/orig":                            "file 644 shared\n",
	"data/twin":                            "file 644 shared\n",
	"dangling":                             "symlink lib/missing",
	"unicode-ñ.txt":                        "file 644 ñ\n",
	"spaces in name":                       "file 644 s\n",
	"lib/long":                             "dir",
	"lib/long/" + strings.Repeat("n", 120): "file 644 long name\n",
}

func TestPackRoundTrip(t *testing.T) {
	specs := maps(serviceDir, map[string]string{
		".git/config":        "file [core]\n",
		".git/objects/x":     "file x",
		"lib/.git":           "file gitdir: elsewhere\n",
		".DS_Store":          "file x",
		"lib/Thumbs.db":      "file x",
		"notes.txt~":         "file x",
		"lib/.util.js.swp":   "file x",
		".hg/store":          "file x",
		".svn/entries":       "file x",
		"keep.swp":           "file not a vim swap file\n",
		".gitignore":         "file *.o\n",
		"link-to-ignored":    "symlink .git/config",
		"lib/deep/.DS_Store": "file x",
	})
	src := makeDir(t, specs)
	var buf bytes.Buffer
	packed, err := PackTo(&buf, src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "svc")
	unpacked, err := Unpack(bytes.NewReader(buf.Bytes()), dst, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := maps(serviceTree, map[string]string{
		"keep.swp":        "file 644 not a vim swap file\n",
		".gitignore":      "file 644 *.o\n",
		"link-to-ignored": "symlink .git/config",
	})
	diffTrees(t, readTree(t, dst), want)

	if packed != unpacked {
		t.Errorf("PackTo info = %+v, Unpack info = %+v, want equal", packed, unpacked)
	}
	if packed.Files != 17 || packed.Dirs != 5 {
		t.Errorf("PackTo info = %+v, want 17 files and 5 dirs", packed)
	}
	for _, d := range []string{src, dst} {
		if got, err := DigestDir(d); err != nil || got != packed.Digest {
			t.Errorf("DigestDir(%s) = %v, %v, want %v", d, got, err, packed.Digest)
		}
	}
	if got, err := Inspect(bytes.NewReader(buf.Bytes()), Limits{}); err != nil || got != packed {
		t.Errorf("Inspect = %+v, %v, want %+v", got, err, packed)
	}
	again, err := Pack(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, buf.Bytes()) {
		t.Errorf("Pack(unpacked) differs from Pack(original)")
	}
}

func maps(a, b map[string]string) map[string]string {
	m := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

func TestPackDeterministic(t *testing.T) {
	src := makeDir(t, serviceDir)
	first, err := Pack(src)
	if err != nil {
		t.Fatal(err)
	}
	// Times, owners' read/write bits and uid do not matter; the exec bit does.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, 1234, 5678)
			if fi.Mode().IsRegular() {
				os.Chmod(p, fi.Mode()&0o100|0o600)
			}
			os.Chtimes(p, old, old)
		}
		return err
	})
	second, err := Pack(src)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatalf("Pack after touching times, owners and modes differs")
	}

	zr, err := gzip.NewReader(bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || zr.Comment != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header = %+v, want no name, comment or mtime", zr.Header)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimSuffix(hdr.Name, "/"))
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: owner %d/%d %q/%q, want 0/0 and no names", hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		if !hdr.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: mtime %v, want the epoch", hdr.Name, hdr.ModTime)
		}
		wantMode := map[byte][]int64{tar.TypeDir: {0o755}, tar.TypeReg: {0o644, 0o755}, tar.TypeSymlink: {0o777}}[hdr.Typeflag]
		if !slices.Contains(wantMode, hdr.Mode) {
			t.Errorf("%s: type %q mode %o, want one of %o", hdr.Name, hdr.Typeflag, hdr.Mode, wantMode)
		}
		if hdr.Typeflag == tar.TypeDir != strings.HasSuffix(hdr.Name, "/") {
			t.Errorf("%s: type %q, want a trailing slash exactly on directories", hdr.Name, hdr.Typeflag)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("entries not sorted: %q", names)
	}
	if len(names) != len(serviceTree) {
		t.Errorf("%d entries, want %d", len(names), len(serviceTree))
	}
}

func TestPackRefuses(t *testing.T) {
	tests := []struct {
		name  string
		specs map[string]string
		make  func(t *testing.T, dir string) // extra set-up
		want  string
	}{
		{"symlink out", map[string]string{"lib/out": "symlink ../../x"}, nil,
			`archive: "lib/out": symlink target escapes the service directory`},
		{"symlink to parent", map[string]string{"up": "symlink .."}, nil,
			`archive: "up": symlink target escapes the service directory`},
		{"symlink absolute", map[string]string{"passwd": "symlink /etc/passwd"}, nil,
			`archive: "passwd": symlink target is absolute`},
		{"symlink out through a symlink", map[string]string{"here": "symlink .", "out": "symlink here/../x"}, nil,
			`archive: "out": symlink target escapes the service directory`},
		{"backslash", map[string]string{`a\b`: "file x"}, nil,
			`archive: "a\\b": path contains a backslash`},
		{"control character", map[string]string{"a\tb": "file x"}, nil,
			`archive: "a\tb": path contains a control character`},
		{"fifo", nil, func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
				sandboxtest.Require(t, false, "mkfifo: "+err.Error())
			}
		}, `archive: "pipe": fifos are not allowed`},
		{"socket", nil, func(t *testing.T, dir string) {
			l, err := net.Listen("unix", filepath.Join(dir, "sock"))
			if err != nil {
				sandboxtest.Require(t, false, "unix socket: "+err.Error())
			}
			t.Cleanup(func() { l.Close() })
		}, `archive: "sock": sockets are not allowed`},
		{"device", nil, func(t *testing.T, dir string) {
			// A device node needs root (mknod); a symlink to one is
			// refused for escaping.
			err := syscall.Mknod(filepath.Join(dir, "null"), syscall.S_IFCHR|0o644, 1<<8|3)
			if err != nil {
				sandboxtest.Require(t, false, "mknod (needs root): "+err.Error())
			}
		}, `archive: "null": device files are not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := makeDir(t, maps(map[string]string{"ok.txt": "file ok"}, tt.specs))
			if tt.make != nil {
				tt.make(t, dir)
			}
			_, err := Pack(dir)
			if !errors.Is(err, ErrUnsafe) || err.Error() != tt.want {
				t.Errorf("Pack error = %v, want %q", err, tt.want)
			}
			if _, derr := DigestDir(dir); derr == nil || derr.Error() != err.Error() {
				t.Errorf("DigestDir error = %v, want %v", derr, err)
			}
		})
	}
}

func TestPackMissingDir(t *testing.T) {
	_, err := Pack(filepath.Join(t.TempDir(), "nope"))
	if err == nil || errors.Is(err, ErrUnsafe) {
		t.Errorf("Pack(missing dir) error = %v, want a plain I/O error", err)
	}
}

func inspectDigest(t *testing.T, data []byte) string {
	t.Helper()
	info, err := Inspect(bytes.NewReader(data), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return info.Digest
}

func TestDigestStable(t *testing.T) {
	base := []ent{
		dir("bin/"),
		withMode(file("bin/run", "#!/bin/sh\necho hi\n"), 0o755),
		file("lib/x.js", "x"),
		symlink("run", "bin/run"),
	}
	want := inspectDigest(t, tgz(t, base...))

	reversed := slices.Clone(base)
	slices.Reverse(reversed)
	var gzip9 bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gzip9, gzip.BestCompression)
	zw.Name, zw.ModTime = "svc.tar", time.Now()
	zw.Write(tarOf(t, base...))
	zw.Close()
	var twoMembers []byte
	whole := tarOf(t, base...)
	twoMembers = append(gz(t, whole[:700]), gz(t, whole[700:])...)

	variants := map[string][]byte{
		"reversed": tgz(t, reversed...),
		"no dir entries": tgz(t,
			withMode(file("bin/run", "#!/bin/sh\necho hi\n"), 0o755),
			file("lib/x.js", "x"),
			symlink("run", "bin/run")),
		"dot-slash names and root entry": tgz(t,
			dir("./"), dir("./bin/"),
			withMode(file("./bin/run", "#!/bin/sh\necho hi\n"), 0o700),
			file("./lib/x.js", "x"),
			symlink("./run", "bin/run")),
		"owners, times, modes": gz(t, tarWith(t, func(h *tar.Header) {
			h.Uid, h.Gid, h.Uname, h.Gname = 1000, 1000, "alice", "staff"
			h.ModTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
			if h.Typeflag == tar.TypeReg && h.Mode&0o111 == 0 {
				h.Mode = 0o600
			}
		}, base...)),
		"pax format":                  gz(t, tarWith(t, func(h *tar.Header) { h.Format = tar.FormatPAX }, base...)),
		"gnu format":                  gz(t, tarWith(t, func(h *tar.Header) { h.Format = tar.FormatGNU }, base...)),
		"gzip -9 with name and mtime": gzip9.Bytes(),
		"two gzip members":            twoMembers,
		"global header":               tgz(t, append([]ent{special("pax_global_header", tar.TypeXGlobalHeader)}, base...)...),
	}
	for name, data := range variants {
		if got := inspectDigest(t, data); got != want {
			t.Errorf("%s: digest %s, want %s", name, got, want)
		}
	}
}

func TestDigestChanges(t *testing.T) {
	base := []ent{withMode(file("bin/run", "hi\n"), 0o755), symlink("run", "bin/run")}
	seen := map[string]string{inspectDigest(t, tgz(t, base...)): "base"}
	variants := map[string][]ent{
		"content":        {withMode(file("bin/run", "ho\n"), 0o755), symlink("run", "bin/run")},
		"exec bit":       {file("bin/run", "hi\n"), symlink("run", "bin/run")},
		"symlink target": {withMode(file("bin/run", "hi\n"), 0o755), symlink("run", "./bin/run")},
		"empty dir":      {withMode(file("bin/run", "hi\n"), 0o755), symlink("run", "bin/run"), dir("e/")},
		"renamed":        {withMode(file("bin/run2", "hi\n"), 0o755), symlink("run", "bin/run")},
		"file for link":  {withMode(file("bin/run", "hi\n"), 0o755), file("run", "bin/run")},
	}
	for name, ents := range variants {
		d := inspectDigest(t, tgz(t, ents...))
		if prev, ok := seen[d]; ok {
			t.Errorf("%s: same digest as %s", name, prev)
		}
		seen[d] = name
	}
}

// TestDigestExample checks the example in the package doc.
func TestDigestExample(t *testing.T) {
	const want = "sha256:3f27045965703b7f0143840d0e8b63ff586d63235ae21c0b9ca8e2f6a22126b8"
	if got := inspectDigest(t, tgz(t, withMode(file("bin/run", "hi\n"), 0o755), symlink("run", "bin/run"))); got != want {
		t.Errorf("digest = %s, want %s", got, want)
	}
	dir := makeDir(t, map[string]string{"bin/run": "exec hi\n", "run": "symlink bin/run"})
	if got, err := DigestDir(dir); err != nil || got != want {
		t.Errorf("DigestDir = %s, %v, want %s", got, err, want)
	}
	if got, err := DigestDir(t.TempDir()); err != nil || got != "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("DigestDir(empty) = %s, %v, want the sha256 of nothing", got, err)
	}
}

// needTool skips the test when the command is missing, unless strict (as
// in CI), where it fails.
func needTool(t *testing.T, name string) {
	t.Helper()
	_, err := exec.LookPath(name)
	sandboxtest.Require(t, err == nil, name+" is needed on PATH")
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	} else if len(out) > 0 {
		t.Logf("%s %s: %s", name, strings.Join(args, " "), out)
	}
}

// TestDigestMatchesRealTar packs the same directory with GNU tar (hard
// links, "./" names, other formats and gzip levels) and git archive, and
// checks every archive digests like DigestDir; and that GNU tar reads Pack's
// archive back to the same tree.
func TestDigestMatchesRealTar(t *testing.T) {
	needTool(t, "tar")
	needTool(t, "gzip")
	src := makeDir(t, serviceDir)
	want, err := DigestDir(src)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmds := map[string]string{
		"default.tgz": "tar -czf OUT .",
		"gnu.tgz":     "tar --format=gnu --owner=nobody:65534 -czf OUT .",
		"pax.tgz":     "tar --format=pax -czf OUT .",
		"star.tgz":    "tar -H posix -czf OUT lib andromeda.yaml main.wasm empty link libdir data dangling unicode-ñ.txt 'spaces in name'",
		"gzip1.tgz":   "tar -cf - . | gzip -1 > OUT",
		"sorted.tgz":  "tar --sort=name --mtime=@0 -cf - . | gzip -n9 > OUT",
	}
	for name, cmd := range cmds {
		t.Run(name, func(t *testing.T) {
			archive := filepath.Join(out, name)
			run(t, src, "sh", "-c", strings.ReplaceAll(cmd, "OUT", archive))
			data, err := os.ReadFile(archive)
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "svc")
			info, err := Unpack(bytes.NewReader(data), dst, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if info.Digest != want {
				t.Errorf("digest of %q = %s, want %s", cmd, info.Digest, want)
			}
			diffTrees(t, readTree(t, dst), serviceTree)
		})
	}

	t.Run("tar reads Pack", func(t *testing.T) {
		data, err := Pack(src)
		if err != nil {
			t.Fatal(err)
		}
		archive := filepath.Join(out, "pack.tgz")
		if err := os.WriteFile(archive, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dst := t.TempDir()
		run(t, dst, "tar", "-xzf", archive)
		if got, err := DigestDir(dst); err != nil || got != want {
			t.Errorf("DigestDir(tar -x of Pack) = %s, %v, want %s", got, err, want)
		}
	})

	t.Run("git archive", func(t *testing.T) {
		needTool(t, "git")
		repo := makeDir(t, maps(serviceDir, map[string]string{"empty": "file git keeps no empty dirs\n"}))
		want, err := DigestDir(repo)
		if err != nil {
			t.Fatal(err)
		}
		git := []string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"}
		run(t, repo, "git", append(git, "init", "-q")...)
		run(t, repo, "git", append(git, "add", "-A")...)
		run(t, repo, "git", append(git, "commit", "-q", "-m", "x")...)
		archive := filepath.Join(out, "git.tgz")
		run(t, repo, "git", append(git, "archive", "--format=tar.gz", "-o", archive, "HEAD")...)
		data, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		if got := inspectDigest(t, data); got != want {
			t.Errorf("digest of git archive = %s, want %s (DigestDir skips .git)", got, want)
		}
	})
}
