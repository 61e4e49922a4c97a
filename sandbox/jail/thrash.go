package jail

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// DefaultThrashAfter is how long a cgroup may thrash at its memory limit
// before WatchThrash reports it.
const DefaultThrashAfter = 2 * time.Second

// thrashTick is how often WatchThrash samples a cgroup.
const thrashTick = 100 * time.Millisecond

// minFaultRate is the rate of major page faults, per second, above which
// a cgroup whose anonymous memory fills its limit counts as thrashing.
const minFaultRate = 100

// A process whose anonymous memory fills its cgroup's limit, with no swap
// to put it in, does not always get killed: each time it asks for a page
// the kernel can still evict one of its file pages (its binary's code,
// the libraries it runs) and call that progress, and the process faults
// the page back in from disk a moment later. It runs on, barely, until
// whatever deadline it has; behind a slow file system (a container's
// fuse-overlayfs, a loaded disk) for many seconds. The kernel kills it
// only when nothing at all is left to evict. thrashDetector tells that
// state from a process that merely uses its memory: anonymous memory
// within a thirty-second of the limit (at least 1 MiB) and major faults at
// minFaultRate or more, both without a break for the detector's window.

// memSample is one reading of a cgroup's memory.
type memSample struct {
	limit  int64 // its memory limit, bytes
	anon   int64 // its anonymous memory, bytes
	faults int64 // major page faults so far; -1 when not read
}

// thrashDetector decides from successive samples whether a cgroup thrashes.
type thrashDetector struct {
	window time.Duration

	last       memSample
	lastAt     time.Time
	since      time.Time // start of the current streak; zero outside one
	faultsFrom int64     // major faults at the streak's start
}

// headroom is how far below limit anonymous memory counts as filling it.
func headroom(limit int64) int64 { return max(limit/32, 1<<20) }

// observe takes the sample s, read at now, and returns a reason when the
// cgroup has thrashed for the detector's window.
func (d *thrashDetector) observe(now time.Time, s memSample) (string, bool) {
	prev, prevAt := d.last, d.lastAt
	d.last, d.lastAt = s, now
	if prevAt.IsZero() || s.limit <= 0 {
		return "", false
	}
	elapsed := now.Sub(prevAt).Seconds()
	full := s.anon >= s.limit-headroom(s.limit)
	faulting := elapsed > 0 && prev.faults >= 0 && s.faults >= 0 && float64(s.faults-prev.faults)/elapsed >= minFaultRate
	if !full || !faulting {
		d.since = time.Time{}
		return "", false
	}
	if d.since.IsZero() {
		d.since, d.faultsFrom = prevAt, prev.faults
	}
	took := now.Sub(d.since)
	if took < d.window {
		return "", false
	}
	return fmt.Sprintf("thrashing at its memory limit: %s of anonymous memory in a %s limit, %d major page faults in %v (the kernel evicting the pages of its code and files and it reading them back, instead of running)",
		mib(s.anon), mib(s.limit), s.faults-d.faultsFrom, took.Round(100*time.Millisecond)), true
}

// mib formats n bytes in MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// WatchThrash samples the cgroup v1 or v2 memory directory dir every
// 100 ms and calls onThrash, once, with the reason when its processes
// have thrashed at its memory limit for after (anonymous memory filling
// the limit, major page faults at 100 a second or more; see
// thrashDetector). The caller kills them and tells it as out of memory.
// It does nothing when after is negative or dir has no limit; a zero
// after is DefaultThrashAfter. stop ends the watch; it returns by itself
// when the cgroup is removed.
func WatchThrash(dir string, after time.Duration, onThrash func(reason string), stop <-chan struct{}) {
	if after < 0 || dir == "" {
		return
	}
	if after == 0 {
		after = DefaultThrashAfter
	}
	w, ok := openMemWatch(dir)
	if !ok {
		return
	}
	go func() {
		defer w.close()
		d := thrashDetector{window: after}
		t := time.NewTicker(thrashTick)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				s, ok := w.sample()
				if !ok {
					return
				}
				if reason, thrash := d.observe(now, s); thrash {
					onThrash(reason)
					return
				}
			}
		}
	}()
}

// memWatch reads one cgroup's memory: its usage file kept open and read
// every tick, its stat file only when the usage comes near the limit.
type memWatch struct {
	v2    bool
	limit int64
	usage *os.File
	stat  string
	anon  []byte // the stat key of anonymous memory
	major []byte // the stat key of major faults
}

// openMemWatch opens the watch of dir, false when dir has no memory
// limit.
func openMemWatch(dir string) (*memWatch, bool) {
	w := &memWatch{stat: filepath.Join(dir, "memory.stat")}
	limitFile, usageFile := "memory.limit_in_bytes", "memory.usage_in_bytes"
	w.anon, w.major = []byte("total_rss "), []byte("total_pgmajfault ")
	if _, err := os.Stat(filepath.Join(dir, "memory.max")); err == nil {
		w.v2 = true
		limitFile, usageFile = "memory.max", "memory.current"
		w.anon, w.major = []byte("anon "), []byte("pgmajfault ")
	}
	b, err := os.ReadFile(filepath.Join(dir, limitFile))
	if err != nil {
		return nil, false
	}
	limit, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil || limit <= 0 || limit >= 1<<62 {
		return nil, false // "max", or v1's unlimited (a page-rounded 2^63-1)
	}
	w.limit = limit
	if w.usage, err = os.Open(filepath.Join(dir, usageFile)); err != nil {
		return nil, false
	}
	return w, true
}

func (w *memWatch) close() { w.usage.Close() }

// sample reads the cgroup's memory; false when the cgroup is gone. Below
// the limit's headroom the stat file is not read: anonymous memory is part
// of the usage, and faults there do not count.
func (w *memWatch) sample() (memSample, bool) {
	var buf [32]byte
	n, err := w.usage.ReadAt(buf[:], 0)
	if n == 0 && err != nil {
		return memSample{}, false
	}
	usage, err := strconv.ParseInt(string(bytes.TrimSpace(buf[:n])), 10, 64)
	if err != nil {
		return memSample{}, false
	}
	s := memSample{limit: w.limit, faults: -1}
	if usage < w.limit-headroom(w.limit) {
		return s, true
	}
	b, err := os.ReadFile(w.stat)
	if err != nil {
		return memSample{}, false
	}
	s.faults = 0
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, w.anon); ok {
			s.anon, _ = strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		} else if v, ok := bytes.CutPrefix(line, w.major); ok {
			s.faults, _ = strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		}
	}
	return s, true
}
