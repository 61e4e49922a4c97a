package node_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/node"
)

// snapshotData lists every file under the data dir that submissions touch
// (services, tmp) and the registry, so a test can check a refused
// submission changed nothing.
func snapshotData(t *testing.T, n *testNode) string {
	t.Helper()
	var lines []string
	for _, sub := range []string{"services", "tmp"} {
		root := filepath.Join(n.cfg.Data, sub)
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err == nil && p != root {
				rel, _ := filepath.Rel(n.cfg.Data, p)
				lines = append(lines, fmt.Sprintf("%s %d", rel, fi.Size()))
			}
			return nil
		})
	}
	list, err := n.op.Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		lines = append(lines, "svc "+s.Name+" "+s.Version+" "+s.Digest)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestBadManifestsChangeNothing(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	base := example(t, "greeter")
	if _, err := n.op.Submit(ctx, pack(t, base)); err != nil {
		t.Fatal(err)
	}
	before := snapshotData(t, n)
	files, _ := filepath.Glob(filepath.Join("..", "manifest", "testdata", "invalid", "*"))
	var cases []string
	for _, f := range files {
		if ext := filepath.Ext(f); ext == ".yaml" || ext == ".json" || ext == ".yml" {
			cases = append(cases, f)
		}
	}
	if len(cases) < 20 {
		t.Fatalf("only %d malformed manifests in manifest/testdata/invalid, want ≥ 20", len(cases))
	}
	for _, f := range cases {
		t.Run(filepath.Base(f), func(t *testing.T) {
			dir := t.TempDir()
			// The manifest is refused before the module is looked at.
			os.WriteFile(filepath.Join(dir, "main.wasm"), []byte("\x00asm\x01\x00\x00\x00"), 0o644)
			copyFile(t, f, filepath.Join(dir, "andromeda"+filepath.Ext(f)))
			_, err := n.op.Submit(ctx, pack(t, dir))
			if s := status(err); s != 400 {
				t.Fatalf("status %d (%v), want 400", s, err)
			}
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("empty error")
			}
			if after := snapshotData(t, n); after != before {
				t.Fatalf("data changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

type entry struct {
	name, link string
	typ        byte
	body       []byte
	size       int64 // for bombs: a size written as zeros
	mode       int64
}

func tarGz(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644}
		if e.mode != 0 {
			h.Mode = e.mode
		}
		switch {
		case e.size > 0:
			h.Size = e.size
		case e.typ == tar.TypeReg:
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.size > 0 {
			io.CopyN(tw, zeros{}, e.size)
		} else if e.typ == tar.TypeReg {
			tw.Write(e.body)
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestMaliciousArchivesChangeNothing(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, func(c *node.Config) { c.Upload.MaxFiles = 100 })
	base := example(t, "greeter")
	manifestYAML, _ := os.ReadFile(filepath.Join(base, "andromeda.yaml"))
	wasm, _ := os.ReadFile(filepath.Join(base, "main.wasm"))
	ok := []entry{{name: "andromeda.yaml", typ: tar.TypeReg, body: manifestYAML}, {name: "main.wasm", typ: tar.TypeReg, body: wasm}}
	with := func(extra ...entry) []byte { return tarGz(t, append(append([]entry{}, ok...), extra...)) }
	many := make([]entry, 150)
	for i := range many {
		many[i] = entry{name: fmt.Sprintf("f%03d", i), typ: tar.TypeReg, body: []byte("x")}
	}
	truncated := with()
	truncated = truncated[:len(truncated)/2]

	cases := []struct {
		name   string
		body   []byte
		status int
		want   string
	}{
		{"path traversal", with(entry{name: "../evil", typ: tar.TypeReg, body: []byte("x")}), 400, "escapes"},
		{"nested traversal", with(entry{name: "a/../../evil", typ: tar.TypeReg, body: []byte("x")}), 400, "escapes"},
		{"absolute path", with(entry{name: "/tmp/evil", typ: tar.TypeReg, body: []byte("x")}), 400, "absolute"},
		{"symlink to absolute", with(entry{name: "l", typ: tar.TypeSymlink, link: "/etc/passwd"}), 400, "absolute"},
		{"symlink escaping", with(entry{name: "l", typ: tar.TypeSymlink, link: "../../etc"}), 400, "escapes"},
		{"write through symlink", with(entry{name: "d", typ: tar.TypeSymlink, link: "."}, entry{name: "d/x", typ: tar.TypeReg, body: []byte("x")}), 400, ""},
		{"hardlink escape", with(entry{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}), 400, ""},
		{"hardlink absolute", with(entry{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}), 400, ""},
		{"char device", with(entry{name: "dev", typ: tar.TypeChar}), 400, "device"},
		{"fifo", with(entry{name: "fifo", typ: tar.TypeFifo}), 400, ""},
		{"decompression bomb", with(entry{name: "bomb", typ: tar.TypeReg, size: 1 << 30}), 413, ""},
		{"too many files", with(many...), 413, ""},
		{"not gzip", []byte("this is not an archive"), 400, ""},
		{"truncated", truncated, 400, ""},
		{"empty body", nil, 400, "empty"},
	}
	before := snapshotData(t, n)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := n.op.Submit(ctx, tc.body)
			if s := status(err); s != tc.status {
				t.Fatalf("status %d (%v), want %d", s, err, tc.status)
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if after := snapshotData(t, n); after != before {
				t.Fatalf("data changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	// The node still takes a good archive afterwards.
	if _, err := n.op.Submit(ctx, with()); err != nil {
		t.Fatalf("good archive after the bad ones: %v", err)
	}
}
