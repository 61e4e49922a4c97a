package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/internal/disk"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

func TestDiskConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*DiskConfig)
		want string // in the error; "" for none
	}{
		{"defaults", func(*DiskConfig) {}, ""},
		{"off", func(c *DiskConfig) { c.MinFree = "0" }, ""},
		{"bad size", func(c *DiskConfig) { c.MinFree = "lots" }, "disk.min_free"},
		{"percent over 50", func(c *DiskConfig) { c.MinFreePercent = 51 }, "disk.min_free_percent"},
		{"negative percent", func(c *DiskConfig) { c.MinFreePercent = -1 }, "disk.min_free_percent"},
		{"bad interval", func(c *DiskConfig) { c.Interval = "often" }, "disk.interval"},
		{"interval too short", func(c *DiskConfig) { c.Interval = "1ms" }, "disk.interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultDiskConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func TestDiskThreshold(t *testing.T) {
	l, err := DefaultDiskConfig().parse()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		total int64
		want  int64
	}{
		{"small filesystem: 5%", 64 << 20, 64 << 20 / 100 * 5},
		{"large filesystem: 256 MiB", 1 << 40, 256 << 20},
	}
	for _, tt := range tests {
		if got := l.threshold(tt.total); got != tt.want {
			t.Errorf("%s: threshold(%d) = %d, want %d", tt.name, tt.total, got, tt.want)
		}
	}
	l.percent = 0
	if got := l.threshold(64 << 20); got != 256<<20 {
		t.Errorf("no percent cap: threshold = %d, want MinFree", got)
	}
}

// The monitor turns low below the threshold and back only a quarter above
// it; a filesystem it cannot measure is not low.
func TestDiskMonitorHysteresis(t *testing.T) {
	c := DefaultDiskConfig()
	c.MinFree, c.MinFreePercent = "100Ki", 0
	var (
		free int64 = 1 << 20
		ferr error
	)
	m, err := newDiskMonitor("/data", c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	m.statfs = func(string) (int64, int64, error) { return free, 1 << 30, ferr }
	steps := []struct {
		free int64
		err  error
		low  bool
	}{
		{1 << 20, nil, false},
		{99 << 10, nil, true},
		{110 << 10, nil, true}, // above the threshold, below the quarter more
		{125 << 10, nil, false},
		{50 << 10, nil, true},
		{0, errors.New("gone"), false},
	}
	for i, s := range steps {
		free, ferr = s.free, s.err
		m.check()
		low, why := m.Low()
		if low != s.low {
			t.Errorf("step %d (free %d, err %v): Low() = %v, want %v", i, s.free, s.err, low, s.low)
		}
		if low && !strings.Contains(why, "disk.min_free") {
			t.Errorf("step %d: reason %q does not name the setting", i, why)
		}
	}
	m.start()
	m.Close()
	m.Close()
}

// TestDiskFull runs a real node with its data directory on a 64 MiB
// filesystem. It needs root (to mount it) and the node wired to its disk
// monitor, work gate and bus health (Start, Ready, Fire, onTick) and to a
// disk section in Config.
func TestDiskFull(t *testing.T) {
	sandboxtest.Require(t, os.Geteuid() == 0, "mounting a small tmpfs needs root")
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build the greeter example")
	greeter := packGreeter(t)

	// The disk fills (here with a file from elsewhere) while the node runs:
	// before it is full, new work is refused with the reason; once there is
	// room again, work resumes by itself.
	t.Run("nearly full refuses new work", func(t *testing.T) {
		f := startOnSmallFS(t, "")
		f.submit(greeter)
		f.fireOK()
		// Default disk config on 64 MiB: keep 3.2 MiB free.
		f.fill(2 << 20)
		f.waitReady(false, "data disk nearly full")
		err := f.fire()
		if httpStatus(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "disk.min_free") {
			t.Fatalf("fire on a nearly full disk = %v (status %d), want 503 naming disk.min_free", err, httpStatus(err))
		}
		f.unfill()
		f.waitReady(true, "")
		f.fireOK()
		f.allStored()
	})

	// Without the low-disk check, the disk fills up completely: the store
	// cannot write. No fire may answer success for a run the store did not
	// keep; /readyz says not ready; fires are refused at once rather than
	// after a 5 s timeout; and once space is freed the store recovers
	// without a restart, its earlier runs intact.
	t.Run("full disk, store cannot write", func(t *testing.T) {
		f := startOnSmallFS(t, "disk:\n  min_free: \"0\"\n")
		f.submit(greeter)
		f.fireOK()
		f.fill(0)
		deadline := time.Now().Add(90 * time.Second)
		for {
			err := f.fire()
			if err != nil {
				if s := httpStatus(err); s != http.StatusServiceUnavailable {
					t.Fatalf("fire on a full disk = %v (status %d), want 503", err, s)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("fires kept succeeding on a full disk")
			}
		}
		f.waitReady(false, bus.ErrUnavailable.Error())
		start := time.Now()
		err := f.fire()
		if httpStatus(err) != http.StatusServiceUnavailable {
			t.Fatalf("fire while the store cannot write = %v, want 503", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("refusing a fire took %s, want it at once", d)
		}
		f.unfill()
		f.waitReady(true, "")
		f.fireOK()
		f.fireOK()
		f.allStored()
	})
}

// smallFS is one node on its own 64 MiB filesystem.
type smallFS struct {
	t      *testing.T
	n      *Node
	op     *api.Client
	mnt    string
	filler string
	ok     []string // run ids answered with success
	logs   *syncBuffer
}

func startOnSmallFS(t *testing.T, config string) *smallFS {
	t.Helper()
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size="+strconv.Itoa(64<<20)); err != nil {
		sandboxtest.Require(t, false, "mount tmpfs: "+err.Error())
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	cfg, err := ParseConfig([]byte(config), false)
	if err != nil {
		t.Fatalf("config %q: %v (Config needs its Disk field: see DiskConfig)", config, err)
	}
	cfg.Data = filepath.Join(mnt, "data")
	cfg.Listen = "127.0.0.1:0"
	cfg.Name = "test"
	cfg.Cache = t.TempDir() // compiled modules off the small filesystem
	logs := &syncBuffer{}
	n, err := New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Close()
		if t.Failed() {
			t.Logf("node log:\n%s", logs.String())
		}
	})
	tok, err := OperatorToken(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	return &smallFS{t: t, n: n, op: api.NewClient(n.Addr(), tok), mnt: mnt, filler: filepath.Join(mnt, "filler"), logs: logs}
}

func (f *smallFS) submit(archive []byte) {
	f.t.Helper()
	if _, err := f.op.Submit(context.Background(), archive); err != nil {
		f.t.Fatal(err)
	}
}

// fire fires the greeter once; a success is remembered to be checked by
// allStored.
func (f *smallFS) fire() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := f.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"Ada"}`))
	if err == nil {
		f.ok = append(f.ok, r.ID)
	}
	return err
}

func (f *smallFS) fireOK() {
	f.t.Helper()
	if err := f.fire(); err != nil {
		f.t.Fatalf("fire: %v", err)
	}
}

// allStored checks that every run answered with success is in the store.
func (f *smallFS) allStored() {
	f.t.Helper()
	for _, id := range f.ok {
		if _, err := f.op.Run(context.Background(), "greeter", id); err != nil {
			f.t.Errorf("run %s was answered with success but is not stored: %v", id, err)
		}
	}
}

// fill writes a file until only leave bytes are free (0: until the
// filesystem is full).
func (f *smallFS) fill(leave int64) {
	f.t.Helper()
	file, err := os.OpenFile(f.filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		f.t.Fatal(err)
	}
	defer file.Close()
	chunk := make([]byte, 64<<10)
	for {
		free, _, err := disk.Usage(f.mnt)
		if err != nil {
			f.t.Fatal(err)
		}
		if leave > 0 && free <= leave {
			return
		}
		n := int64(len(chunk))
		if leave > 0 {
			n = min(n, free-leave)
		}
		if _, err := file.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			f.t.Fatal(err)
		}
	}
}

func (f *smallFS) unfill() {
	f.t.Helper()
	if err := os.Remove(f.filler); err != nil {
		f.t.Fatal(err)
	}
}

// waitReady waits for /readyz to say ready (or not, with a body containing
// want).
func (f *smallFS) waitReady(ready bool, want string) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(f.n.URL() + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = strconv.Itoa(resp.StatusCode) + " " + string(b)
			if ready && resp.StatusCode == http.StatusOK {
				return
			}
			if !ready && resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(b), want) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.t.Fatalf("/readyz never became ready=%v (want %q); last answer: %s", ready, want, last)
}

func httpStatus(err error) int {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// packGreeter builds examples/greeter and returns its archive.
func packGreeter(t *testing.T) []byte {
	t.Helper()
	src := filepath.Join("..", "examples", "greeter")
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "main.wasm" || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := gobuild.Wasm(context.Background(), src, filepath.Join(dir, "main.wasm"), gobuild.Reactor); err != nil {
		t.Fatal(err)
	}
	b, err := archive.Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// syncBuffer is a bytes.Buffer safe for the node's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
