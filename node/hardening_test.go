package node_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/node"
)

// TestDataDirLock: a second node on the same data dir is refused at start
// with an error naming the lock file and the holder's pid, and the first
// node's data is untouched; once the first stops, the dir can be used.
func TestDataDirLock(t *testing.T) {
	first := startNode(t)
	cfg := first.cfg
	cfg.Listen = "127.0.0.1:0"
	second, err := node.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = second.Start(context.Background())
	if err == nil {
		second.Close()
		t.Fatal("a second node started on a data dir in use")
	}
	lock := filepath.Join(cfg.Data, node.LockFile)
	if !errors.Is(err, node.ErrLocked) || !strings.Contains(err.Error(), lock) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second start = %v; want ErrLocked naming %s and pid %d", err, lock, os.Getpid())
	}
	if err := first.Ready(); err != nil {
		t.Fatalf("first node after the refused second: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	third, err := node.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := third.Start(context.Background()); err != nil {
		t.Fatalf("start after the first node stopped: %v", err)
	}
	third.Close()
}
