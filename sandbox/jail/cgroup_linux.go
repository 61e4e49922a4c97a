package jail

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// The controllers a jail's cgroup uses. cpuacct only exists in cgroup v1;
// in v2 CPU time is read from cpu.stat, which every cgroup has.
const (
	ctlMemory  = "memory"
	ctlPids    = "pids"
	ctlCPU     = "cpu"
	ctlCPUAcct = "cpuacct"
)

// controller is where one controller's jail cgroups are created.
type controller struct {
	v2     bool
	parent string // directory under which each jail gets a cgroup
}

// cgroups is what this host offers: per controller, its hierarchy. A
// controller missing from the map is not available, and notes say why.
type cgroups struct {
	ctl   map[string]controller
	notes []string
	swap  string // swapNote's, also among notes; "" when limits hold swap
}

// mountInfo is one line of /proc/self/mountinfo that is a cgroup file system.
type cgroupMount struct {
	root, point string
	v2          bool
	controllers []string // v1 only
}

// detectCgroups finds, for the memory, pids, cpu and cpuacct controllers,
// the hierarchy that has them (a v1 mount listing the controller, or the v2
// unified hierarchy when its cgroup.controllers lists it), and makes sure
// the parent cgroup exists and, for v2, delegates the controllers to its
// children. It removes jail cgroups left behind by a node that died.
func detectCgroups(parent string) *cgroups {
	cg := &cgroups{ctl: map[string]controller{}}
	mounts, err := readCgroupMounts()
	if err != nil {
		cg.notes = append(cg.notes, "cgroups: "+err.Error())
		return cg
	}
	own, err := ownCgroups()
	if err != nil {
		cg.notes = append(cg.notes, "cgroups: "+err.Error())
		return cg
	}
	if os.Geteuid() != 0 {
		cg.notes = append(cg.notes, "cgroups: the node is not root and cannot create cgroups; memory, pids and cpu limits do not hold")
		return cg
	}
	var v2 *cgroupMount
	for i := range mounts {
		if mounts[i].v2 {
			v2 = &mounts[i]
		}
	}
	for _, name := range []string{ctlMemory, ctlPids, ctlCPU, ctlCPUAcct} {
		var found bool
		for _, m := range mounts {
			if m.v2 || !contains(m.controllers, name) {
				continue
			}
			key := strings.Join(m.controllers, ",")
			dir, err := parentDir(m, own[key], parent)
			if err != nil {
				cg.notes = append(cg.notes, fmt.Sprintf("cgroup v1 %s: %v", name, err))
			} else {
				cg.ctl[name] = controller{parent: dir}
			}
			found = true
			break
		}
		if found || v2 == nil {
			continue
		}
		if name == ctlCPUAcct {
			if c, ok := cg.ctl[ctlCPU]; ok && c.v2 {
				cg.ctl[name] = c // cpu.stat in the same v2 cgroup
			}
			continue
		}
		dir, err := parentDir(*v2, own[""], parent)
		if err != nil {
			cg.notes = append(cg.notes, fmt.Sprintf("cgroup v2 %s: %v", name, err))
			continue
		}
		if err := delegateV2(v2.point, dir, name); err != nil {
			cg.notes = append(cg.notes, fmt.Sprintf("cgroup v2 %s: %v", name, err))
			continue
		}
		cg.ctl[name] = controller{v2: true, parent: dir}
	}
	if c, ok := cg.ctl[ctlCPU]; ok && c.v2 {
		cg.ctl[ctlCPUAcct] = c
	}
	for _, name := range []string{ctlMemory, ctlPids, ctlCPU} {
		if _, ok := cg.ctl[name]; !ok {
			cg.notes = append(cg.notes, fmt.Sprintf("cgroups: no usable %s controller on this host", name))
		}
	}
	if c, ok := cg.ctl[ctlMemory]; ok {
		if cg.swap = swapNote(hostSwap(), c); cg.swap != "" {
			cg.notes = append(cg.notes, cg.swap)
		}
	}
	seen := map[string]bool{}
	for _, c := range cg.ctl {
		if !seen[c.parent] {
			seen[c.parent] = true
			sweepStale(c.parent)
		}
	}
	return cg
}

// swapNote says, when the host has swap (swap bytes of it) and the
// memory controller c cannot limit a cgroup's swap, that a memory limit
// holds resident memory only: a worker at its limit swaps rather than
// being killed. "" when limits include swap, or there is none.
func swapNote(swap int64, c controller) string {
	file := "memory.memsw.limit_in_bytes" // v1: only with swapaccount=1
	if c.v2 {
		file = "memory.swap.max" // v2: only with swap accounting built in
	}
	if _, err := os.Stat(filepath.Join(c.parent, file)); swap <= 0 || err == nil {
		return ""
	}
	return fmt.Sprintf("cgroup memory: this host has %d MiB of swap and its cgroups do not account it (no %s): a memory limit caps resident memory only, and a worker past it swaps instead of being killed", swap>>20, file)
}

// hostSwap is the host's swap in bytes (SwapTotal in /proc/meminfo); 0
// when it has none or it cannot be read.
func hostSwap() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "SwapTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// describe is one line per controller for the offer's notes.
func (cg *cgroups) describe() []string {
	var out []string
	for _, name := range []string{ctlMemory, ctlPids, ctlCPU} {
		if c, ok := cg.ctl[name]; ok {
			v := "v1"
			if c.v2 {
				v = "v2"
			}
			out = append(out, fmt.Sprintf("cgroup %s: %s under %s", name, v, c.parent))
		}
	}
	return append(out, cg.notes...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// readCgroupMounts lists the cgroup file systems mounted in this mount
// namespace.
func readCgroupMounts() ([]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseCgroupMounts(f)
}

// parseCgroupMounts reads the cgroup file systems of a mountinfo file.
func parseCgroupMounts(r io.Reader) ([]cgroupMount, error) {
	var out []cgroupMount
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f1, f2 := strings.Fields(pre), strings.Fields(post)
		if len(f1) < 5 || len(f2) < 3 {
			continue
		}
		switch f2[0] {
		case "cgroup2":
			out = append(out, cgroupMount{root: UnescapeMount(f1[3]), point: UnescapeMount(f1[4]), v2: true})
		case "cgroup":
			var ctls []string
			for _, o := range strings.Split(f2[2], ",") {
				switch o {
				case "rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children", "xattr", "nsdelegate", "memory_recursiveprot", "favordynmods":
				default:
					if !strings.Contains(o, "=") {
						ctls = append(ctls, o)
					}
				}
			}
			out = append(out, cgroupMount{root: UnescapeMount(f1[3]), point: UnescapeMount(f1[4]), controllers: ctls})
		}
	}
	return out, sc.Err()
}

// ownCgroups maps each hierarchy of /proc/self/cgroup (its controller list,
// "" for v2) to the node's cgroup path there.
func ownCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	own := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 {
			own[parts[1]] = parts[2]
		}
	}
	return own, nil
}

// parentDir returns the directory of the parent cgroup in mount m and
// creates it: parent under the node's own cgroup (ownPath) when relative,
// under the hierarchy's root when absolute.
func parentDir(m cgroupMount, ownPath, parent string) (string, error) {
	var p string
	if path.IsAbs(parent) {
		p = parent
	} else {
		p = path.Join(ownPath, parent)
	}
	rel, err := filepath.Rel(m.root, p)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("cgroup %s is outside the mounted part of the hierarchy (%s)", p, m.root)
	}
	dir := filepath.Join(m.point, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create parent cgroup: %w", err)
	}
	return dir, nil
}

// delegateV2 enables controller name in the subtree_control of every cgroup
// from the v2 mount point down to dir, so that dir's children get it.
func delegateV2(point, dir, name string) error {
	rel, err := filepath.Rel(point, dir)
	if err != nil {
		return err
	}
	avail, err := os.ReadFile(filepath.Join(point, "cgroup.controllers"))
	if err != nil {
		return err
	}
	if !contains(strings.Fields(string(avail)), name) {
		return errors.New("not available in the unified hierarchy (bound to a v1 hierarchy, or disabled)")
	}
	cur := point
	for _, part := range append([]string{""}, strings.Split(rel, string(filepath.Separator))...) {
		if part != "" && part != "." {
			cur = filepath.Join(cur, part)
		}
		ctl, err := os.ReadFile(filepath.Join(cur, "cgroup.subtree_control"))
		if err != nil {
			return err
		}
		if contains(strings.Fields(string(ctl)), name) {
			continue
		}
		if err := os.WriteFile(filepath.Join(cur, "cgroup.subtree_control"), []byte("+"+name), 0); err != nil {
			return fmt.Errorf("enable in %s: %w (a cgroup v2 parent must have no processes of its own: set CgroupParent to a delegated, empty cgroup)", cur, err)
		}
	}
	return nil
}

// workerPrefix starts the name of every jail cgroup: w-<node pid>-<seq>.
const workerPrefix = "w-"

// sweepStale removes jail cgroups under parent whose node is gone.
func sweepStale(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), workerPrefix)
		if !e.IsDir() || !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(name, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			dir := filepath.Join(parent, e.Name())
			killCgroup(dir, isV2(dir))
			_ = removeCgroup(dir, time.Second)
		}
	}
}

func isV2(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "cgroup.controllers"))
	return err == nil
}

// workerSeq numbers jail cgroups within this node process.
var workerSeq atomic.Int64

// cgroup is one jail's cgroup, in every hierarchy that has one of its
// controllers.
type cgroup struct {
	dirs  []string // distinct directories, one per hierarchy
	mem   string   // directory with the memory controller, "" if none
	memV2 bool
	cpu   *os.File // cpuacct.usage (v1, ns) or cpu.stat (v2, usage_usec), read with ReadAt
	cpuV2 bool
	peak  *os.File // memory.max_usage_in_bytes (v1) or memory.peak (v2), nil if neither
}

// create makes a cgroup for one jail named name and sets l in it. The
// caller must remove it.
func (cg *cgroups) create(jail string, l Limits) (_ *cgroup, err error) {
	name := fmt.Sprintf("%s%d-%d-%s", workerPrefix, os.Getpid(), workerSeq.Add(1), jail)
	if len(name) > 200 {
		name = name[:200]
	}
	g := &cgroup{}
	defer func() {
		if err != nil {
			g.remove(time.Second)
		}
	}()
	dirFor := func(ctl string) (string, bool, error) {
		c, ok := cg.ctl[ctl]
		if !ok {
			return "", false, nil
		}
		dir := filepath.Join(c.parent, name)
		for _, d := range g.dirs {
			if d == dir {
				return dir, c.v2, nil
			}
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return "", false, fmt.Errorf("create cgroup: %w", err)
		}
		g.dirs = append(g.dirs, dir)
		return dir, c.v2, nil
	}
	write := func(dir, file, value string, optional bool) error {
		err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0)
		if err != nil && !(optional && errors.Is(err, os.ErrNotExist)) {
			return fmt.Errorf("cgroup %s = %s: %w", file, value, err)
		}
		return nil
	}

	dir, v2, err := dirFor(ctlMemory)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		g.mem, g.memV2 = dir, v2
		if l.Memory > 0 {
			mem := strconv.FormatInt(l.Memory, 10)
			if v2 {
				err = errors.Join(write(dir, "memory.max", mem, false),
					write(dir, "memory.swap.max", "0", true),
					write(dir, "memory.oom.group", "1", true))
			} else {
				err = errors.Join(write(dir, "memory.limit_in_bytes", mem, false),
					write(dir, "memory.memsw.limit_in_bytes", mem, true))
			}
			if err != nil {
				return nil, err
			}
		}
		peak := "memory.max_usage_in_bytes"
		if v2 {
			peak = "memory.peak"
		}
		if f, err := os.Open(filepath.Join(dir, peak)); err == nil {
			g.peak = f
		}
	}
	if dir, _, err = dirFor(ctlPids); err != nil {
		return nil, err
	} else if dir != "" && l.Pids > 0 {
		if err := write(dir, "pids.max", strconv.Itoa(l.Pids), false); err != nil {
			return nil, err
		}
	}
	if dir, v2, err = dirFor(ctlCPU); err != nil {
		return nil, err
	} else if dir != "" && l.CPU > 0 {
		const period = 100000
		quota := max(int64(l.CPU*period), 1000)
		if v2 {
			err = write(dir, "cpu.max", fmt.Sprintf("%d %d", quota, period), false)
		} else {
			err = errors.Join(write(dir, "cpu.cfs_period_us", strconv.Itoa(period), false),
				write(dir, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10), false))
		}
		if err != nil {
			return nil, err
		}
	}
	if dir, v2, err = dirFor(ctlCPUAcct); err != nil {
		return nil, err
	} else if dir != "" {
		file := "cpuacct.usage"
		if v2 {
			file = "cpu.stat"
		}
		if f, err := os.Open(filepath.Join(dir, file)); err == nil {
			g.cpu, g.cpuV2 = f, v2
		}
	}
	return g, nil
}

// add moves process pid into every directory of the cgroup.
func (g *cgroup) add(pid int) error {
	for _, dir := range g.dirs {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("move worker into cgroup %s: %w", dir, err)
		}
	}
	return nil
}

// cpuTime returns the CPU time the cgroup's processes used so far, or -1.
func (g *cgroup) cpuTime() time.Duration {
	if g == nil || g.cpu == nil {
		return -1
	}
	var buf [512]byte
	n, err := g.cpu.ReadAt(buf[:], 0)
	if n == 0 && err != nil {
		return -1
	}
	b := buf[:n]
	if !g.cpuV2 {
		v, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
		if err != nil {
			return -1
		}
		return time.Duration(v)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("usage_usec ")); ok {
			us, err := strconv.ParseInt(string(v), 10, 64)
			if err == nil {
				return time.Duration(us) * time.Microsecond
			}
		}
	}
	return -1
}

// peakMemory returns the cgroup's memory high-water mark, or 0.
func (g *cgroup) peakMemory() int64 {
	if g == nil || g.peak == nil {
		return 0
	}
	var buf [32]byte
	n, _ := g.peak.ReadAt(buf[:], 0)
	v, _ := strconv.ParseInt(string(bytes.TrimSpace(buf[:n])), 10, 64)
	return v
}

// oomKills returns how many processes the kernel killed in this cgroup for
// exceeding its memory limit, or -1 when the kernel does not say.
func (g *cgroup) oomKills() int {
	if g == nil || g.mem == "" {
		return -1
	}
	file, key := "memory.oom_control", "oom_kill "
	if g.memV2 {
		file, key = "memory.events", "oom_kill "
	}
	b, err := os.ReadFile(filepath.Join(g.mem, file))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// kill kills every process in the cgroup.
func (g *cgroup) kill() {
	if g == nil {
		return
	}
	for _, dir := range g.dirs {
		killCgroup(dir, isV2(dir))
	}
}

// killCgroup kills every process in the cgroup at dir: with cgroup.kill on
// v2 kernels that have it, else by listing cgroup.procs until it is empty.
func killCgroup(dir string, v2 bool) {
	if v2 && os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) == nil {
		return
	}
	for range 10 {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			return
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// remove closes the cgroup's files and removes its directories, retrying
// for up to wait while the kernel finishes tearing its processes down.
func (g *cgroup) remove(wait time.Duration) error {
	if g == nil {
		return nil
	}
	if g.cpu != nil {
		g.cpu.Close()
	}
	if g.peak != nil {
		g.peak.Close()
	}
	var errs []error
	for _, dir := range g.dirs {
		errs = append(errs, removeCgroup(dir, wait))
	}
	return errors.Join(errs...)
}

func removeCgroup(dir string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
