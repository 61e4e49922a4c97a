package archive

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
)

// filesOf turns makeDir specs into Files.
func filesOf(specs map[string]string) []File {
	var files []File
	for p, spec := range specs {
		kind, arg, _ := strings.Cut(spec, " ")
		f := File{Path: p}
		switch kind {
		case "file", "exec":
			f.Mode, f.Size = 0o644, int64(len(arg))
			if kind == "exec" {
				f.Mode = 0o755
			}
			f.Open = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(arg)), nil }
		case "dir":
			f.Mode = fs.ModeDir
		case "symlink":
			f.Mode, f.Target = fs.ModeSymlink, arg
		}
		files = append(files, f)
	}
	return files
}

// TestPackFilesMatchesPackTo: the same files, given in memory in any order,
// pack to the very bytes (and digest) PackTo writes for a directory holding
// them, skipped names included.
func TestPackFilesMatchesPackTo(t *testing.T) {
	specs := map[string]string{
		"andromeda.yaml":     "file name: x\n",
		"bin/run":            "exec hi\n",
		"run":                "symlink bin/run",
		"empty":              "dir",
		"deep/a/b/c.txt":     "file c",
		".DS_Store":          "file litter",
		"deep/notes.txt~":    "file backup",
		".andromeda/x.json":  "file attestation",
		"deep/.git/HEAD":     "file ref: x",
		"deep/.andromeda/ok": "file kept below the root",
	}
	var want bytes.Buffer
	wantInfo, err := PackTo(&want, makeDir(t, specs))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	gotInfo, err := PackFiles(&got, filesOf(specs), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if gotInfo != wantInfo || !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("PackFiles = %+v (%d bytes), PackTo = %+v (%d bytes)", gotInfo, got.Len(), wantInfo, want.Len())
	}
	inspected, err := Inspect(bytes.NewReader(got.Bytes()), Limits{})
	if err != nil || inspected.Digest != wantInfo.Digest {
		t.Fatalf("Inspect = %+v, %v; want digest %s", inspected, err, wantInfo.Digest)
	}
}

func TestPackFilesRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		specs map[string]string
		lim   Limits
		kind  error
		text  string
	}{
		{"escaping link", map[string]string{"a": "symlink ../x"}, Limits{}, ErrUnsafe, "escapes"},
		{"absolute path", map[string]string{"/etc/passwd": "file x"}, Limits{}, ErrUnsafe, "absolute"},
		{"dotdot", map[string]string{"../x": "file x"}, Limits{}, ErrUnsafe, "escapes"},
		{"file too large", map[string]string{"a": "file 12345"}, Limits{MaxFileSize: 4}, ErrTooLarge, "file larger than 4 bytes"},
		{"total too large", map[string]string{"a": "file 123", "b": "file 123"}, Limits{MaxSize: 5}, ErrTooLarge, "files total more than 5 bytes"},
		{"too many entries", map[string]string{"a/b/c": "file x"}, Limits{MaxEntries: 2}, ErrTooLarge, "more than 2 entries"},
		{"through a file", map[string]string{"a": "file x", "a/b": "file y"}, Limits{}, ErrUnsafe, ""},
		{"dotdot into the meta dir", map[string]string{"x/../.andromeda/y": "file x"}, Limits{}, ErrUnsafe, `"x/../.andromeda/y": path is not clean (.andromeda/y once cleaned)`},
		{"dotdot inside", map[string]string{"a/../b": "file x"}, Limits{}, ErrUnsafe, "path is not clean (b once cleaned)"},
		{"dot element", map[string]string{"./a": "file x"}, Limits{}, ErrUnsafe, "path is not clean (a once cleaned)"},
		{"empty element", map[string]string{"a//b": "file x"}, Limits{}, ErrUnsafe, "path is not clean (a/b once cleaned)"},
		{"trailing slash", map[string]string{"a/": "dir"}, Limits{}, ErrUnsafe, "path is not clean (a once cleaned)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PackFiles(io.Discard, filesOf(tc.specs), tc.lim)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("PackFiles = %v, want %v with %q", err, tc.kind, tc.text)
			}
		})
	}
	// Content that is not the size it claims is an error, not a short file.
	f := File{Path: "a", Mode: 0o644, Size: 3, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("four")), nil }}
	if _, err := PackFiles(io.Discard, []File{f}, Limits{}); err == nil || !strings.Contains(err.Error(), "not the 3 bytes") {
		t.Fatalf("PackFiles with a lying size = %v", err)
	}
}
