package docker

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/andromeda-runner/andromeda/sandbox/jail"
)

// cgroup is where a container's usage is read: the directories of its
// cgroup in the cgroup v1 memory and cpuacct hierarchies, or in the v2
// unified one. The last values read are kept, so that a reading after the
// engine removed the cgroup (the container ended) returns them.
type cgroup struct {
	memory, cpuacct string // v1
	unified         string // v2, when there is no v1 memory hierarchy

	mu        sync.Mutex
	files     map[string]*os.File // files kept open, read again from their start
	cpu       time.Duration
	peak      int64
	ooms      int
	oomEvents int // OOMs the watch saw (watchOOM)
}

// findCgroup returns the cgroup of the process pid (a container's first
// process, as the engine reports it), or nil when it cannot be found (a
// remote engine, another PID namespace).
func findCgroup(pid int) *cgroup {
	dirs, ok := jail.CgroupsOf(pid)
	if !ok {
		return nil
	}
	return &cgroup{cpu: -1, memory: dirs.Memory, cpuacct: dirs.CPUAcct, unified: dirs.Unified}
}

// readInt reads a file holding one integer.
func readInt(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// readOpen reads the integer in the cgroup's file at path, keeping the
// file open for the next reading: the pool reads usage after every
// invocation, and an open, read and close of a cgroup file per reading
// costs tens of microseconds of a warm invocation's round trip. Called
// with c.mu held.
func (c *cgroup) readOpen(path string) (int64, bool) {
	f := c.files[path]
	if f == nil {
		var err error
		if f, err = os.Open(path); err != nil {
			return 0, false
		}
		if c.files == nil {
			c.files = map[string]*os.File{}
		}
		c.files[path] = f
	}
	var b [64]byte
	n, err := f.ReadAt(b[:], 0)
	if n == 0 && err != nil {
		// The cgroup is gone (the container ended).
		f.Close()
		delete(c.files, path)
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b[:n])), 10, 64)
	return v, err == nil
}

// close closes the files kept open.
func (c *cgroup) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.files {
		f.Close()
	}
	c.files = nil
}

// readKey reads the integer of key in a flat keyed file (memory.events,
// cpu.stat, memory.oom_control).
func readKey(path, key string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// cpuTime is the CPU time of the cgroup's processes; -1 when unknown.
func (c *cgroup) cpuTime() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var t time.Duration
	var ok bool
	switch {
	case c.cpuacct != "":
		var n int64
		n, ok = c.readOpen(filepath.Join(c.cpuacct, "cpuacct.usage"))
		t = time.Duration(n)
	case c.unified != "":
		var n int64
		n, ok = readKey(filepath.Join(c.unified, "cpu.stat"), "usage_usec")
		t = time.Duration(n) * time.Microsecond
	}
	if ok {
		c.cpu = max(c.cpu, t)
	}
	return c.cpu
}

// peakMemory is the cgroup's memory high-water mark; 0 when unknown.
func (c *cgroup) peakMemory() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	var ok bool
	switch {
	case c.memory != "":
		n, ok = c.readOpen(filepath.Join(c.memory, "memory.max_usage_in_bytes"))
	case c.unified != "":
		n, ok = c.readOpen(filepath.Join(c.unified, "memory.peak"))
	}
	if ok {
		c.peak = max(c.peak, n)
	}
	return c.peak
}

// oomKills is the number of the cgroup's processes killed for memory.
func (c *cgroup) oomKills() int {
	var n int64
	var ok bool
	switch {
	case c.memory != "":
		n, ok = readKey(filepath.Join(c.memory, "memory.oom_control"), "oom_kill")
	case c.unified != "":
		n, ok = readKey(filepath.Join(c.unified, "memory.events"), "oom_kill")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.ooms = max(c.ooms, int(n))
	}
	return max(c.ooms, c.oomEvents)
}

// sampleNetwork reads the container's network counters (its network
// namespace's interfaces but loopback, from /proc/<pid>/net/dev) and
// returns them; after the container ended, the last values read.
func (p *containerProc) sampleNetwork() (rx, tx int64) {
	p.netMu.Lock()
	defer p.netMu.Unlock()
	if p.cg != nil {
		// A process of this host's: its network namespace's counters.
		if r, t, ok := readNetDev("/proc/" + strconv.Itoa(p.pid) + "/net/dev"); ok {
			p.rx, p.tx = max(p.rx, r), max(p.tx, t)
		}
	} else if s := p.sample(); s.ok {
		p.rx, p.tx = max(p.rx, s.rx), max(p.tx, s.tx)
	}
	return p.rx, p.tx
}

// network returns the network counters as last read.
func (p *containerProc) network() (rx, tx int64) {
	p.netMu.Lock()
	defer p.netMu.Unlock()
	return p.rx, p.tx
}

// readNetDev sums the received and sent bytes of every interface but
// loopback in a /proc/net/dev file.
func readNetDev(path string) (rx, tx int64, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.Lines(string(b)) {
		name, rest, found := strings.Cut(line, ":")
		if !found || strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, err1 := strconv.ParseInt(f[0], 10, 64)
		t, err2 := strconv.ParseInt(f[8], 10, 64)
		if err1 == nil && err2 == nil {
			rx, tx = rx+r, tx+t
		}
	}
	return rx, tx, true
}

// watchOOM reads the cgroup's OOM kill count each time the kernel reports
// an OOM in it (cgroup v1: an eventfd registered on memory.oom_control),
// so that the count is known after the engine removed the cgroup with the
// container. It returns when the cgroup is removed or stop is closed; it
// does nothing on cgroup v2, where the engine's State.OOMKilled is what
// tells.
func (c *cgroup) watchOOM(stop <-chan struct{}) {
	if c.memory == "" {
		return
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return
	}
	ev := os.NewFile(uintptr(efd), "oom-eventfd")
	ctl, err := os.Open(filepath.Join(c.memory, "memory.oom_control"))
	if err != nil {
		ev.Close()
		return
	}
	reg := fmt.Sprintf("%d %d", efd, ctl.Fd())
	if err := os.WriteFile(filepath.Join(c.memory, "cgroup.event_control"), []byte(reg), 0); err != nil {
		ev.Close()
		ctl.Close()
		return
	}
	go func() {
		<-stop
		ev.Close()
	}()
	go func() {
		defer ctl.Close()
		var b [8]byte
		for {
			if _, err := ev.Read(b[:]); err != nil {
				return
			}
			// An OOM (the kernel then kills, and counts the kill a
			// moment later), or the cgroup's removal (its files are gone).
			if _, ok := readKey(filepath.Join(c.memory, "memory.oom_control"), "oom_kill"); !ok {
				return
			}
			c.mu.Lock()
			c.oomEvents++
			c.mu.Unlock()
		}
	}()
}
