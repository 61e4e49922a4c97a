package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// ent is one tar entry a test archive holds.
type ent struct {
	name string
	typ  byte // default tar.TypeReg
	body string
	mode int64 // default 0644
	link string
	size int64 // overrides len(body) when set; the body is then padded with zeros
}

func file(name, body string) ent             { return ent{name: name, body: body} }
func dir(name string) ent                    { return ent{name: name, typ: tar.TypeDir} }
func symlink(name, target string) ent        { return ent{name: name, typ: tar.TypeSymlink, link: target} }
func hardlink(name, target string) ent       { return ent{name: name, typ: tar.TypeLink, link: target} }
func special(name string, typ byte) ent      { return ent{name: name, typ: typ} }
func withMode(e ent, mode int64) ent         { e.mode = mode; return e }
func tarOf(t testing.TB, ents ...ent) []byte { return tarWith(t, nil, ents...) }

// tarWith writes ents as a tar stream, letting edit change each header.
func tarWith(t testing.TB, edit func(*tar.Header), ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, ModTime: time.Unix(1e9, 0)}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.body))
			if e.size != 0 {
				hdr.Size = e.size
			}
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			hdr = &tar.Header{Name: e.name, Typeflag: e.typ, PAXRecords: map[string]string{"comment": "x"}}
		}
		if edit != nil {
			edit(hdr)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("WriteHeader(%q): %v", e.name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			body := []byte(e.body)
			if int64(len(body)) < hdr.Size {
				body = append(body, make([]byte, hdr.Size-int64(len(body)))...)
			}
			if _, err := tw.Write(body); err != nil {
				t.Fatalf("Write(%q): %v", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// headerOnly returns the bytes of one tar header and nothing after it.
func headerOnly(t testing.TB, hdr *tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := tar.NewWriter(&buf).WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tgz(t testing.TB, ents ...ent) []byte { return gz(t, tarOf(t, ents...)) }

// assertNothingLeft fails unless parent is empty: no dst, no temp dir.
func assertNothingLeft(t *testing.T, parent string) {
	t.Helper()
	left, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("left behind in %s: %s", parent, e.Name())
	}
}

func manyFiles(n int) []ent {
	ents := make([]ent, n)
	for i := range ents {
		ents[i] = file(fmt.Sprintf("f%05d", i), "")
	}
	return ents
}

func TestUnpackRefuses(t *testing.T) {
	valid := tgz(t, file("a", strings.Repeat("x", 4096)), file("b", "b"))
	trailing := append(bytes.Clone(valid), "garbage"...)
	badCRC := bytes.Clone(valid)
	badCRC[len(badCRC)-8] ^= 0xff
	// A gzip header, then a deflate block of the reserved type 3.
	badDeflate := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	badGzipHeader := bytes.Clone(valid)
	badGzipHeader[2] = 7 // compression method
	badHeader := tarOf(t, file("a", "a"))
	badHeader[148] = '9' // checksum field
	random := make([]byte, 4096)
	rand.Read(random)
	bigRandom := make([]byte, 64<<10)
	rand.Read(bigRandom)

	tests := []struct {
		name string
		data []byte
		lim  Limits
		kind error
		want string // the whole message
	}{
		{"traversal", tgz(t, file("../x", "x")), Limits{}, ErrUnsafe,
			`archive: "../x": path escapes the service directory`},
		{"nested traversal", tgz(t, dir("a/"), file("a/../../x", "x")), Limits{}, ErrUnsafe,
			`archive: "a/../../x": path escapes the service directory`},
		{"deep traversal", tgz(t, file("../../etc/passwd", "x")), Limits{}, ErrUnsafe,
			`archive: "../../etc/passwd": path escapes the service directory`},
		{"absolute path", tgz(t, file("/etc/passwd", "x")), Limits{}, ErrUnsafe,
			`archive: "/etc/passwd": path is absolute`},
		{"windows drive", tgz(t, file("C:/x", "x")), Limits{}, ErrUnsafe,
			`archive: "C:/x": path starts with a windows drive letter`},
		{"backslash", tgz(t, file(`a\..\..\x`, "x")), Limits{}, ErrUnsafe,
			`archive: "a\\..\\..\\x": path contains a backslash`},
		{"control character", tgz(t, file("a\nb", "x")), Limits{}, ErrUnsafe,
			`archive: "a\nb": path contains a control character`},
		{"empty name", tgz(t, file("", "x")), Limits{}, ErrUnsafe,
			`archive: path is empty`},
		{"root as file", tgz(t, file(".", "x")), Limits{}, ErrUnsafe,
			`archive: ".": path names the service directory itself`},
		{"too deep", tgz(t, file(strings.Repeat("d/", 32)+"f", "x")), Limits{}, ErrUnsafe,
			`path deeper than 32 elements`},
		{"too long", tgz(t, file(strings.Repeat("d", 200)+"/"+strings.Repeat("e", 200), "x")), Limits{MaxPathLen: 300}, ErrUnsafe,
			`path longer than 300 bytes`},
		{"symlink absolute", tgz(t, symlink("etc", "/etc")), Limits{}, ErrUnsafe,
			`archive: "etc": symlink target is absolute`},
		{"symlink escapes", tgz(t, dir("a/"), symlink("a/up", "../../x")), Limits{}, ErrUnsafe,
			`archive: "a/up": symlink target escapes the service directory`},
		{"symlink escapes through a symlink", tgz(t, symlink("here", "."), symlink("out", "here/../x")), Limits{}, ErrUnsafe,
			`archive: "out": symlink target escapes the service directory`},
		{"symlink escapes through a later symlink", tgz(t, symlink("out", "sub/../x"), symlink("sub", ".")), Limits{}, ErrUnsafe,
			`archive: "out": symlink target escapes the service directory`},
		{"symlink loop", tgz(t, symlink("a", "b"), symlink("b", "a")), Limits{}, ErrUnsafe,
			`archive: "a": symlink target loops or follows more than 40 links`},
		{"write through symlinked dir", tgz(t, symlink("link", ".."), file("link/x", "x")), Limits{}, ErrUnsafe,
			`archive: "link/x": path goes through symlink "link"`},
		{"write through inner symlink", tgz(t, dir("d/"), symlink("link", "d"), file("link/x", "x")), Limits{}, ErrUnsafe,
			`archive: "link/x": path goes through symlink "link"`},
		{"symlink over implied dir", tgz(t, file("link/x", "x"), symlink("link", "..")), Limits{}, ErrUnsafe,
			`archive: "link": path is a directory implied by an earlier entry`},
		{"hardlink escape", tgz(t, hardlink("h", "../x")), Limits{}, ErrUnsafe,
			`archive: "h": hard link target escapes the service directory`},
		{"hardlink to /etc/passwd", tgz(t, hardlink("passwd", "/etc/passwd")), Limits{}, ErrUnsafe,
			`archive: "passwd": hard link target is absolute`},
		{"hardlink forward", tgz(t, hardlink("h", "later"), file("later", "x")), Limits{}, ErrUnsafe,
			`archive: "h": hard link target is not a file earlier in the archive`},
		{"hardlink to dir", tgz(t, dir("d/"), hardlink("h", "d")), Limits{}, ErrUnsafe,
			`archive: "h": hard link target is a directory`},
		{"hardlink to symlink", tgz(t, symlink("s", "x"), hardlink("h", "s")), Limits{}, ErrUnsafe,
			`archive: "h": hard link target is a symlink`},
		{"char device", tgz(t, special("tty", tar.TypeChar)), Limits{}, ErrUnsafe,
			`archive: "tty": device nodes are not allowed`},
		{"block device", tgz(t, special("sda", tar.TypeBlock)), Limits{}, ErrUnsafe,
			`archive: "sda": device nodes are not allowed`},
		{"fifo", tgz(t, special("pipe", tar.TypeFifo)), Limits{}, ErrUnsafe,
			`archive: "pipe": fifos are not allowed`},
		{"contiguous file", tgz(t, special("c", tar.TypeCont)), Limits{}, ErrUnsafe,
			`archive: "c": entry type '7' is not supported`},
		{"duplicate file", tgz(t, file("a", "1"), file("a", "2")), Limits{}, ErrUnsafe,
			`archive: "a": duplicate entry`},
		{"duplicate after cleaning", tgz(t, file("a/b", "1"), file("./a//b", "2")), Limits{}, ErrUnsafe,
			`archive: "./a//b": duplicate entry`},
		{"duplicate dir", tgz(t, dir("d/"), dir("d/")), Limits{}, ErrUnsafe,
			`archive: "d/": duplicate entry`},
		{"dir over file", tgz(t, file("a", "1"), dir("a/")), Limits{}, ErrUnsafe,
			`archive: "a/": duplicate entry`},
		{"parent is a file", tgz(t, file("a", "1"), file("a/b", "2")), Limits{}, ErrUnsafe,
			`archive: "a/b": parent "a" is a file`},
		{"two global headers", tgz(t, special("g1", tar.TypeXGlobalHeader), special("g2", tar.TypeXGlobalHeader)), Limits{}, ErrUnsafe,
			`archive: "g2": more than one pax global header`},
		{"file too large", tgz(t, ent{name: "big", size: 2 << 10}), Limits{MaxFileSize: 1 << 10}, ErrTooLarge,
			`archive: "big": file larger than 1024 bytes`},
		{"1 GiB file header", gz(t, headerOnly(t, &tar.Header{Name: "huge", Typeflag: tar.TypeReg, Size: 1 << 30})), Limits{}, ErrTooLarge,
			`archive: "huge": file larger than 33554432 bytes`},
		{"total too large", tgz(t, ent{name: "a", size: 600}, ent{name: "b", size: 600}), Limits{MaxSize: 1000}, ErrTooLarge,
			`archive: "b": files total more than 1000 bytes`},
		{"hardlink copies count", tgz(t, ent{name: "a", size: 600}, hardlink("b", "a")), Limits{MaxSize: 1000}, ErrTooLarge,
			`archive: "b": files total more than 1000 bytes`},
		{"too many files", tgz(t, manyFiles(4097)...), Limits{}, ErrTooLarge,
			`archive: "f04096": more than 4096 entries`},
		{"implied dirs count", tgz(t, file("a/b/c/d", "x")), Limits{MaxEntries: 3}, ErrTooLarge,
			`archive: "a/b/c/d": more than 3 entries`},
		{"compressed too large", gz(t, tarOf(t, file("r", string(random)))), Limits{MaxCompressed: 1024}, ErrTooLarge,
			`archive: archive larger than 1024 bytes compressed`},
		{"compressed too large mid-stream", gz(t, tarOf(t, file("r", string(bigRandom)))), Limits{MaxCompressed: 20000}, ErrTooLarge,
			`archive: "r": archive larger than 20000 bytes compressed`},
		{"not gzip", tarOf(t, file("a", "a")), Limits{}, ErrFormat,
			`archive: not a gzip stream`},
		{"empty input", nil, Limits{}, ErrFormat,
			`archive: not a gzip stream`},
		{"truncated gzip", valid[:len(valid)/2], Limits{}, ErrFormat,
			`archive is truncated`},
		{"truncated gzip header", valid[:5], Limits{}, ErrFormat,
			`archive: archive is truncated`},
		{"gzip without trailer", valid[:len(valid)-4], Limits{}, ErrFormat,
			`archive: archive is truncated`},
		{"gzip checksum", badCRC, Limits{}, ErrFormat,
			`archive: gzip checksum mismatch`},
		{"corrupt deflate", badDeflate, Limits{}, ErrFormat,
			`archive: corrupt gzip data: flate: corrupt input before offset 1`},
		{"bad gzip header", badGzipHeader, Limits{}, ErrFormat,
			`archive: invalid gzip header`},
		{"short trailing garbage", append(bytes.Clone(valid), 'x'), Limits{}, ErrFormat,
			`archive: data after the gzip stream is not gzip`},
		{"trailing zeros", append(bytes.Clone(valid), make([]byte, 1024)...), Limits{}, ErrFormat,
			`archive: data after the gzip stream is not gzip`},
		{"trailing truncated member", append(bytes.Clone(valid), valid[:20]...), Limits{}, ErrFormat,
			`archive: archive is truncated`},
		{"trailing garbage", trailing, Limits{}, ErrFormat,
			`archive: data after the gzip stream is not gzip`},
		{"data after tar end", gz(t, append(tarOf(t, file("a", "a")), "junk"...)), Limits{}, ErrFormat,
			`archive: data after the end of the tar archive`},
		{"truncated tar", gz(t, tarOf(t, file("a", strings.Repeat("a", 2000)))[:1024]), Limits{}, ErrFormat,
			`archive: "a": archive is truncated`},
		{"bad tar header", gz(t, badHeader), Limits{}, ErrFormat,
			`archive: invalid tar header`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "svc")
			_, err := Unpack(bytes.NewReader(tt.data), dst, tt.lim)
			if err == nil {
				t.Fatalf("Unpack succeeded, want %v", tt.want)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("Unpack error %q is not %v", err, tt.kind)
			}
			var ae *Error
			if !errors.As(err, &ae) {
				t.Errorf("Unpack error %q is not an *Error", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Unpack error = %q, want %q", err, tt.want)
			}
			if _, serr := os.Lstat(dst); !errors.Is(serr, fs.ErrNotExist) {
				t.Errorf("dst exists after a failed Unpack (Lstat: %v)", serr)
			}
			assertNothingLeft(t, parent)

			// Inspect applies the same rules.
			_, ierr := Inspect(bytes.NewReader(tt.data), tt.lim)
			if ierr == nil || ierr.Error() != err.Error() {
				t.Errorf("Inspect error = %v, want %v", ierr, err)
			}
		})
	}
}

// bomb streams a gzipped tar holding one file of size zeros, compressing
// only as fast as it is read. It reports the bytes of zeros produced.
func bomb(t *testing.T, size int64) (io.Reader, *atomic.Int64) {
	pr, pw := io.Pipe()
	var produced atomic.Int64
	go func() {
		zw := gzip.NewWriter(pw)
		tw := tar.NewWriter(zw)
		err := tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: size})
		buf := make([]byte, 64<<10)
		for left := size; err == nil && left > 0; {
			n := min(left, int64(len(buf)))
			_, err = tw.Write(buf[:n])
			left -= n
			produced.Add(n)
		}
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	t.Cleanup(func() { pr.CloseWithError(errors.New("test over")) })
	return pr, &produced
}

func TestUnpackStopsBombEarly(t *testing.T) {
	tests := []struct {
		name string
		lim  Limits
		want string
	}{
		{"file cap", Limits{}, `archive: "zeros": file larger than 33554432 bytes`},
		{"ratio", Limits{MaxFileSize: 2 << 30, MaxSize: 2 << 30}, `archive: "zeros": compression ratio above 100:1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			r, produced := bomb(t, 1<<30)
			_, err := Unpack(r, filepath.Join(parent, "svc"), tt.lim)
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Unpack(1 GiB of zeros) error = %v, want %q", err, tt.want)
			}
			assertNothingLeft(t, parent)
			if got := produced.Load(); got > 8<<20 {
				t.Errorf("bomb produced %d bytes before Unpack stopped, want < 8 MiB", got)
			}
		})
	}
}

func TestUnpackManySmallFilesBomb(t *testing.T) {
	// 10 files of 1 MiB zeros each: every file is under the per-file cap,
	// the ratio stops it.
	ents := make([]ent, 10)
	for i := range ents {
		ents[i] = ent{name: fmt.Sprintf("z%03d", i), size: 1 << 20}
	}
	data := tgz(t, ents...)
	parent := t.TempDir()
	_, err := Unpack(bytes.NewReader(data), filepath.Join(parent, "svc"), Limits{})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "compression ratio above 100:1") {
		t.Fatalf("Unpack error = %v, want compression ratio", err)
	}
	assertNothingLeft(t, parent)
}

func TestUnpackSanitisesModes(t *testing.T) {
	data := tgz(t,
		withMode(dir("d/"), 0o1777),
		withMode(file("d/suid", "x"), 0o4755),
		withMode(file("sgid", "x"), 0o2711),
		withMode(file("world", "x"), 0o666),
		withMode(file("private", "x"), 0o600),
		withMode(file("execonly", "x"), 0o100),
	)
	dst := filepath.Join(t.TempDir(), "svc")
	if _, err := Unpack(bytes.NewReader(data), dst, Limits{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]fs.FileMode{
		".":        fs.ModeDir | 0o755,
		"d":        fs.ModeDir | 0o755,
		"d/suid":   0o755,
		"sgid":     0o755,
		"world":    0o644,
		"private":  0o644,
		"execonly": 0o755,
	}
	for name, mode := range want {
		fi, err := os.Lstat(filepath.Join(dst, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("mode of %s = %v, want %v", name, fi.Mode(), mode)
		}
	}
}

func TestUnpackAccepts(t *testing.T) {
	data := tgz(t,
		special("pax_global_header", tar.TypeXGlobalHeader),
		dir("./"),
		withMode(file("./bin/run", "#!/bin/sh\n"), 0o755),
		file("a/../b", "b"), // cleans to b
		hardlink("bin/run2", "./bin/run"),
		symlink("run", "bin/run"),
		symlink("bin/up", "../b"),
		symlink("dangling", "nowhere/at/all"),
		symlink("binlink", "bin"),
		symlink("viabin", "binlink/../b"),
		dir("bin/"), // listed after it was implied
		dir("empty/"),
	)
	dst := filepath.Join(t.TempDir(), "svc")
	info, err := Unpack(bytes.NewReader(data), dst, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Info{Digest: info.Digest, Files: 8, Dirs: 2, Size: 21}); info != want {
		t.Errorf("Unpack info = %+v, want %+v", info, want)
	}
	got := readTree(t, dst)
	want := map[string]string{
		"b":        "file 644 b",
		"bin":      "dir",
		"bin/run":  "file 755 #!/bin/sh\n",
		"bin/run2": "file 755 #!/bin/sh\n",
		"bin/up":   "symlink ../b",
		"run":      "symlink bin/run",
		"dangling": "symlink nowhere/at/all",
		"binlink":  "symlink bin",
		"viabin":   "symlink binlink/../b",
		"empty":    "dir",
	}
	diffTrees(t, got, want)
	a, _ := os.Stat(filepath.Join(dst, "bin/run"))
	b, _ := os.Stat(filepath.Join(dst, "bin/run2"))
	if os.SameFile(a, b) {
		t.Errorf("hard link unpacked as a link, want a copy")
	}
	if d, err := DigestDir(dst); err != nil || d != info.Digest {
		t.Errorf("DigestDir(unpacked) = %v, %v, want %v", d, err, info.Digest)
	}
}

func TestUnpackDestinationExists(t *testing.T) {
	parent := t.TempDir()
	dst := filepath.Join(parent, "svc")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Unpack(bytes.NewReader(tgz(t, file("a", "a"))), dst, Limits{})
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Unpack into an existing dir error = %v, want fs.ErrExist", err)
	}
	if errors.Is(err, ErrUnsafe) || errors.Is(err, ErrFormat) || errors.Is(err, ErrTooLarge) {
		t.Errorf("Unpack error %v blames the archive", err)
	}
	if left, _ := os.ReadDir(parent); len(left) != 1 {
		t.Errorf("parent holds %d entries, want only dst", len(left))
	}
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestUnpackSourceError(t *testing.T) {
	boom := errors.New("connection reset")
	data := tgz(t, file("a", strings.Repeat("a", 100000)))
	r := io.MultiReader(bytes.NewReader(data[:len(data)/2]), failingReader{boom})
	parent := t.TempDir()
	_, err := Unpack(r, filepath.Join(parent, "svc"), Limits{})
	if !errors.Is(err, boom) {
		t.Fatalf("Unpack error = %v, want the source's error", err)
	}
	if errors.Is(err, ErrFormat) {
		t.Errorf("Unpack error %v blames the archive for the transport", err)
	}
	assertNothingLeft(t, parent)
}

func TestLimitsValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Errorf("DefaultLimits().Validate() = %v", err)
	}
	if err := (Limits{}).Validate(); err != nil {
		t.Errorf("Limits{}.Validate() = %v", err)
	}
	err := Limits{MaxDepth: -1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "MaxDepth") {
		t.Errorf("Validate(MaxDepth: -1) = %v, want an error naming MaxDepth", err)
	}
	if _, err := Inspect(bytes.NewReader(nil), Limits{MaxSize: -1}); err == nil {
		t.Errorf("Inspect with a negative limit succeeded")
	}
}

// readTree describes every node under dir as "dir", "file <mode> <content>"
// or "symlink <target>".
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	got := make(map[string]string)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			got[rel] = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			got[rel] = "symlink " + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got[rel] = fmt.Sprintf("file %o %s", fi.Mode().Perm(), b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func diffTrees(t *testing.T, got, want map[string]string) {
	t.Helper()
	for p, w := range want {
		if g, ok := got[p]; !ok {
			t.Errorf("%s missing, want %q", p, w)
		} else if g != w {
			t.Errorf("%s = %q, want %q", p, g, w)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s = %q, want absent", p, g)
		}
	}
}
