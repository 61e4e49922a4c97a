package node_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// listLimit is the most entries node answers for one directory (listLimit
// in files.go).
const listLimit = 10000

// TestFilesSpecial: a named pipe or a socket a guest left in its volume is
// refused at once with a 400 naming its type, directly or through a link,
// rather than opened: opening a pipe for reading waits for a writer, so
// each GET used to hold a thread and a connection for good. A directory
// holding more than listLimit entries answers the first listLimit by name.
func TestFilesSpecial(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	if _, err := n.op.Submit(context.Background(), pack(t, volumeService(t, "wasm", "pipes", "1.0.0", "command", "[{name: out, path: /out, size: 16Mi}]"))); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(n.cfg.Data, "volumes", "pipes", "out")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "p")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// Runs before the node closes: a GET that still waits in open (the
	// bug) is released by a writer, so a failure does not stall Close.
	t.Cleanup(func() {
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	if err := os.Symlink("p", filepath.Join(dir, "lp")); err != nil {
		t.Fatal(err)
	}
	sock, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	for _, tt := range []struct{ path, want string }{
		{"/out/p", "/out/p: is a named pipe"},
		{"/out/lp", "/out/lp: is a named pipe"},
		{"/out/s", "/out/s: is a socket"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := n.op.GetFile(ctx, "pipes", tt.path, io.Discard)
		cancel()
		if status(err) != http.StatusBadRequest || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("GetFile(%s) = %v, want 400 with %q", tt.path, err, tt.want)
		}
	}

	many := filepath.Join(dir, "many")
	if err := os.Mkdir(many, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range listLimit + 50 {
		if err := os.WriteFile(filepath.Join(many, fmt.Sprintf("f%05d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := n.op.ListFiles(ctx, "pipes", "/out/many")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != listLimit || !l.Truncated || l.Total != listLimit+50 {
		t.Fatalf("ListFiles(/out/many) = %d entries, truncated %v, total %d; want %d, truncated, of %d", len(l.Entries), l.Truncated, l.Total, listLimit, listLimit+50)
	}
	first, last := l.Entries[0].Name, l.Entries[listLimit-1].Name
	if want := fmt.Sprintf("f%05d", listLimit-1); first != "f00000" || last != want {
		t.Errorf("ListFiles(/out/many) = %s .. %s, want f00000 .. %s", first, last, want)
	}
}
