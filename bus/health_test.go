package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// smallFS mounts a tmpfs of size bytes on a fresh directory for the test.
func smallFS(t *testing.T, size int64) string {
	t.Helper()
	sandboxtest.Require(t, os.Geteuid() == 0, "mounting a small tmpfs needs root")
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		sandboxtest.Require(t, false, "mount tmpfs: "+err.Error())
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHealthDiskFullAndRecovery(t *testing.T) {
	dir := smallFS(t, 16<<20)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &records{}
	ctx := context.Background()
	b, err := Open(ctx, Config{Dir: filepath.Join(dir, "nats"), Logger: slog.New(logs), HealthInterval: 100 * time.Millisecond, RecoverFree: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Health(); err != nil {
		t.Fatalf("Health() of a fresh bus = %v", err)
	}
	runs, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "RUNS", Subjects: []string{"runs.*"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "state", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "svc", []byte("before")); err != nil {
		t.Fatal(err)
	}

	// Fill the filesystem until a publish is not acknowledged.
	payload := make([]byte, 4000)
	acked := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := b.JS.Publish(pctx, "runs.svc", payload)
		cancel()
		if err != nil {
			break
		}
		acked++
		if acked > 10000 {
			t.Fatal("16 MiB filesystem never filled")
		}
	}
	waitFor(t, 5*time.Second, "Health() reports the write error", func() bool { return b.Health() != nil })
	herr := b.Health()
	if !errors.Is(herr, ErrUnavailable) || !strings.Contains(herr.Error(), "no space left on device") {
		t.Errorf("Health() = %v, want ErrUnavailable naming the full disk", herr)
	}
	if !strings.Contains(herr.Error(), "waiting for") {
		t.Errorf("Health() = %v, want it to say it waits for free space", herr)
	}
	var logged bool
	for _, r := range logs.take() {
		if r.Level == slog.LevelError && strings.Contains(r.Message, "no space left on device") {
			logged = true
		}
	}
	if !logged {
		t.Error("the server's write error never reached the logger")
	}
	// The stream stays broken while the disk is full.
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = b.JS.Publish(pctx, "runs.svc", payload)
	cancel()
	if err == nil {
		t.Fatal("publish on a full disk succeeded")
	}

	// Free space: the bus restarts JetStream by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "Health() recovers", func() bool { return b.Health() == nil })
	if _, err := b.JS.Publish(ctx, "runs.svc", payload); err != nil {
		t.Fatalf("publish after recovery: %v", err)
	}
	info, err := runs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.State.Msgs, uint64(acked+1); got != want {
		t.Errorf("stream holds %d messages after recovery, want %d (every acknowledged one and the new one)", got, want)
	}
	e, err := kv.Get(ctx, "svc")
	if err != nil || string(e.Value()) != "before" {
		t.Fatalf("kv after recovery = %v, %v; want %q", e, err, "before")
	}
	if _, err := kv.Put(ctx, "svc", []byte("after")); err != nil {
		t.Fatalf("kv put after recovery: %v", err)
	}
}

// TestCreatingStreamsIsNoProblem creates buckets while the health report
// is read: a stream being created has its directory before it is
// registered, which the server's report calls "could not be recovered"
// for a moment. That must never count as a problem worth restarting
// JetStream for (lastingProblem), while the raw report may see it.
func TestCreatingStreamsIsNoProblem(t *testing.T) {
	ctx := context.Background()
	b, err := Open(ctx, Config{Dir: filepath.Join(t.TempDir(), "nats"), HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	done := make(chan struct{})
	var raw, lasting atomic.Int64
	var last atomic.Value
	go func() {
		defer close(done)
		for i := range 60 {
			if _, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: fmt.Sprintf("b%d", i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the raw report, as often as it can be read
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if p := b.storeProblem(); p != "" {
				raw.Add(1)
				last.Store(p)
			}
		}
	}()
	go func() { // what the watcher acts on
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if p := b.lastingProblem(); p != "" {
				lasting.Add(1)
				t.Errorf("lasting problem while creating buckets: %s", p)
			}
		}
	}()
	wg.Wait()
	t.Logf("the raw report saw a problem %d times while creating 60 buckets (last: %v); lasting: %d", raw.Load(), last.Load(), lasting.Load())
}
