package archive_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/andromeda-runner/andromeda/archive"
)

// TestMetaDir checks that attestations written into a service directory do
// not change the digest they sign, and that an archive cannot smuggle them.
func TestMetaDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.wasm"), []byte("code"), 0o644)
	before, err := archive.DigestDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, archive.MetaDir), 0o755)
	os.WriteFile(filepath.Join(dir, archive.MetaDir, "attestations.json"), []byte(`{}`), 0o644)
	after, err := archive.DigestDir(dir)
	if err != nil || after != before {
		t.Fatalf("digest with %s/ = %s, %v; want %s", archive.MetaDir, after, err, before)
	}
	packed, err := archive.Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := archive.Inspect(bytes.NewReader(packed), archive.Limits{})
	if err != nil || info.Digest != before || info.Files != 1 {
		t.Fatalf("packed = %+v, %v; want only main.wasm", info, err)
	}
	// A nested .andromeda is ordinary content.
	os.MkdirAll(filepath.Join(dir, "sub", archive.MetaDir), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", archive.MetaDir, "x"), []byte("x"), 0o644)
	if d, _ := archive.DigestDir(dir); d == before {
		t.Fatal("nested .andromeda left out of the digest")
	}

	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Name: ".andromeda/attestations.json", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644})
	tw.Write([]byte("{}"))
	tw.Close()
	gz.Close()
	dst := filepath.Join(t.TempDir(), "svc")
	_, err = archive.Unpack(bytes.NewReader(buf.Bytes()), dst, archive.Limits{})
	if !errors.Is(err, archive.ErrUnsafe) {
		t.Fatalf("Unpack with .andromeda/ = %v, want ErrUnsafe", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatal("dst left behind")
	}
}
