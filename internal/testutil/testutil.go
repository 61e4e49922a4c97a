// Package testutil holds small helpers the tests of several packages
// share. Only tests import it.
package testutil

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
)

// Logger returns a debug logger that keeps what it is given in memory and
// prints it through t only if t failed: a node's own account of a failure
// that happened on another machine.
func Logger(t testing.TB) *slog.Logger {
	w := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the log:\n%s", w.String())
		}
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreeAddr returns a loopback address whose port was free a moment ago,
// for a listener the test starts itself later (a cluster's routes, which
// name each other's ports before any listens). The port is drawn from
// below Linux's ephemeral range (32768 and up), which the kernel hands
// out for ":0" listeners and for every outgoing connection: a port taken
// from there could be given to another test's connection before this
// test binds it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		return ln.Addr().String()
	}
	t.Fatal("no free port between 20000 and 32000 in 100 tries")
	return ""
}

// CopyDir copies the tree src to dst, which must not exist yet.
func CopyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}
