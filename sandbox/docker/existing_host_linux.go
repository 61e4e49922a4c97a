package docker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The host side of placement into existing containers. The engine's API
// has no call to signal one exec's process, to set its resource limits or
// to delete a file in a container, so the driver does those through the
// host's /proc: it needs the engine on this host (the container's
// processes in its PID namespace) and root. hostContainer checks the first
// before anything is placed.

// hostContainer is a running container as this host sees it.
type hostContainer struct {
	id      string // the container's full ID
	initPid int    // the host PID of its first process (State.Pid)
	initFd  int    // a pidfd of it: nothing is done through a PID reused by another process
	pidNS   uint64 // the inode of its PID namespace
	uidMap  [][3]int64
}

// openHostContainer checks that the container id's first process is the
// host process initPid (its cgroup names id) and returns it.
func openHostContainer(id string, initPid int) (*hostContainer, error) {
	if initPid <= 0 {
		return nil, fmt.Errorf("the engine reports no process for it")
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", initPid))
	if err != nil || !bytes.Contains(cg, []byte(id)) {
		return nil, fmt.Errorf("its process %d is not one of this host's: placement into an existing container needs the engine on the node's host", initPid)
	}
	fd, err := unix.PidfdOpen(initPid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd of its process %d: %w", initPid, err)
	}
	ns, err := pidNS(initPid)
	if err == nil && unix.PidfdSendSignal(fd, 0, nil, 0) != nil {
		err = errors.New("it ended")
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("its PID namespace: %w", err)
	}
	// The pidfd is held for the life of the deployment (it does not keep
	// the container from stopping; its file system is never held open).
	c := &hostContainer{id: id, initPid: initPid, initFd: fd, pidNS: ns}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", initPid)); err == nil {
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) != 3 {
				continue
			}
			var m [3]int64
			for i := range f {
				m[i], _ = strconv.ParseInt(f[i], 10, 64)
			}
			c.uidMap = append(c.uidMap, m)
		}
	}
	return c, nil
}

// hostUID is the host's uid for the container's uid (they differ when the
// engine remaps user namespaces); -1 when the container has no such uid.
func (c *hostContainer) hostUID(uid int) int {
	if len(c.uidMap) == 0 {
		return uid
	}
	for _, m := range c.uidMap {
		if int64(uid) >= m[0] && int64(uid) < m[0]+m[2] {
			return int(m[1] + int64(uid) - m[0])
		}
	}
	return -1
}

// pidNS is the inode of process pid's PID namespace.
func pidNS(pid int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/pid", pid), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// procInfo is what the driver reads of one host process.
type procInfo struct {
	pid, ppid int
	sid       int  // its session: an exec's process leads one, which what it starts inherits
	uid       int  // real uid, as the host sees it
	dead      bool // a zombie, which its parent has yet to reap
}

// readProc reads process pid's parent and real uid.
func readProc(pid int) (procInfo, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procInfo{}, err
	}
	p := procInfo{pid: pid, ppid: -1, uid: -1}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "PPid":
			p.ppid, _ = strconv.Atoi(f[0])
		case "Uid":
			p.uid, _ = strconv.Atoi(f[0])
		case "State":
			p.dead = f[0] == "Z" || f[0] == "X"
		case "NSsid": // the session ID in each PID namespace, the host's first
			p.sid, _ = strconv.Atoi(f[0])
		}
	}
	return p, nil
}

// running reports whether the container's first process still runs.
func (c *hostContainer) running() bool {
	return unix.PidfdSendSignal(c.initFd, 0, nil, 0) == nil
}

// procs lists the container's processes, by host PID; none once the
// container stopped.
func (c *hostContainer) procs() []procInfo {
	if !c.running() {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := pidNS(pid); err != nil || ns != c.pidNS {
			continue
		}
		if p, err := readProc(pid); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// procsOf lists the container's processes whose real uid is the
// container's uid.
func (c *hostContainer) procsOf(uid int) []procInfo {
	huid := c.hostUID(uid)
	var out []procInfo
	for _, p := range c.procs() {
		if p.uid == huid {
			out = append(out, p)
		}
	}
	return out
}

// killUID kills every process of the container running as uid, until
// none is left (a process may fork while the others are killed; the
// service's process limit bounds how often). It reports the processes
// still there after its last round. Zombies are dead already: they stay
// until their parent reaps them (the container's init, for orphans).
func (c *hostContainer) killUID(uid int) error {
	var left []procInfo
	for round := 0; round < 50; round++ {
		left = slices.DeleteFunc(c.procsOf(uid), func(p procInfo) bool { return p.dead })
		if len(left) == 0 {
			return nil
		}
		for _, p := range left {
			_ = unix.Kill(p.pid, unix.SIGKILL)
		}
		time.Sleep(time.Duration(round+1) * time.Millisecond)
	}
	return fmt.Errorf("%d processes of uid %d still run in the container", len(left), uid)
}

// tree lists the processes of the container that process pid started:
// those of its session running as the host's uid huid (started by it,
// their parent gone, or by them), and, with below, every process below
// it, deepest first. below is only for a process that has not ended
// (its PID is not another's).
func (c *hostContainer) tree(pid, huid int, below bool) []int {
	children := map[int][]int{}
	var session []int
	for _, p := range c.procs() {
		children[p.ppid] = append(children[p.ppid], p.pid)
		if p.sid == pid && p.pid != pid && p.uid == huid && !p.dead {
			session = append(session, p.pid)
		}
	}
	if !below {
		return session
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, ch := range children[p] {
			walk(ch)
			out = append(out, ch)
		}
	}
	walk(pid)
	return append(out, session...)
}

// procHandle is one started exec process, held by a pidfd so that a
// signal never reaches another process that reused its PID. The pidfd is
// also an *os.File on the runtime's poller, which tells the process's end
// without a thread blocked for it.
type procHandle struct {
	pid   int
	pidfd int
	f     *os.File
}

// adoptProc opens a pidfd for pid and checks that it is the container's
// and runs as uid.
func (c *hostContainer) adoptProc(pid, uid int) (*procHandle, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd of process %d: %w", pid, err)
	}
	h := &procHandle{pid: pid, pidfd: fd, f: os.NewFile(uintptr(fd), "pidfd")}
	ns, err := pidNS(pid)
	if err == nil && ns != c.pidNS {
		err = fmt.Errorf("process %d is not in the container's PID namespace", pid)
	}
	if err == nil {
		var p procInfo
		if p, err = readProc(pid); err == nil && p.uid != c.hostUID(uid) {
			err = fmt.Errorf("process %d runs as host uid %d, not the service's uid %d", pid, p.uid, uid)
		}
	}
	if err == nil && !h.alive() {
		err = fmt.Errorf("process %d ended", pid)
	}
	if err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// wait returns when the process ended, or the handle was closed.
func (h *procHandle) wait() {
	ended := func(fd uintptr) bool {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return n > 0 || (err != nil && !errors.Is(err, unix.EINTR))
	}
	rc, err := h.f.SyscallConn()
	if err == nil {
		err = rc.Read(ended)
	}
	if err == nil || errors.Is(err, os.ErrClosed) {
		return
	}
	// Not on the poller: block a thread on it instead.
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); !errors.Is(err, unix.EINTR) {
				return
			}
		}
	})
}

// alive reports whether the process has not ended.
func (h *procHandle) alive() bool {
	return unix.PidfdSendSignal(h.pidfd, 0, nil, 0) == nil
}

// limit sets resource limit res of the process, which runs as the host's
// uid and gid huid, to n (soft and hard). Root without CAP_SYS_RESOURCE
// may set the limits of its own uid's processes only: then a thread of
// its own, which ends with it, takes the process's uid and gid for the
// call.
func (h *procHandle) limit(huid, res int, n uint64) error {
	lim := unix.Rlimit{Cur: n, Max: n}
	err := unix.Prlimit(h.pid, res, &lim, nil)
	if errors.Is(err, unix.EPERM) {
		err = prlimitAs(huid, h.pid, res, &lim)
	}
	if err != nil {
		return err
	}
	if !h.alive() { // the PID may have been reused between the check and prlimit
		return fmt.Errorf("process %d ended", h.pid)
	}
	return nil
}

// prlimitAs sets the limit of process pid from a thread running as uid and
// gid id (see onThreadOfItsOwn).
func prlimitAs(id, pid, res int, lim *unix.Rlimit) error {
	var err error
	onThreadOfItsOwn(func() {
		// Raw system calls change this thread's credentials only (the
		// runtime's Setuid would change every thread's).
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(id), uintptr(id), uintptr(id)); e != 0 {
			err = fmt.Errorf("take gid %d: %w", id, e)
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(id), uintptr(id), uintptr(id)); e != 0 {
			err = fmt.Errorf("take uid %d: %w", id, e)
			return
		}
		err = unix.Prlimit(pid, res, lim, nil)
	})
	return err
}

// onThreadOfItsOwn runs f on an OS thread that ends when f returns, so
// that what f changes of its thread (credentials) never reaches another
// goroutine: f's goroutine locks its thread and exits locked, which ends
// the thread. The process's main thread cannot end (the runtime parks it
// for good, and the process's owner as ps shows it is the main thread's),
// so a goroutine that lands there holds it while another one, which then
// cannot land there, runs f.
func onThreadOfItsOwn(f func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			onThreadOfItsOwn(f)
			runtime.UnlockOSThread()
			close(done)
			return
		}
		defer close(done)
		f()
	}()
	<-done
}

// kill sends SIGKILL to the process; an ended process is no error.
func (h *procHandle) kill() {
	err := unix.PidfdSendSignal(h.pidfd, unix.SIGKILL, nil, 0)
	_ = err // ESRCH: it ended already
}

// stat reads the process's CPU time (user and system, its own) and its
// resident high-water mark; ok is false when it ended.
func (h *procHandle) stat() (cpu time.Duration, hwm int64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.pid))
	if err != nil {
		return 0, 0, false
	}
	// The fields after the command, which is in parentheses and may hold
	// any byte: state is field 3, utime 14 and stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, false
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+st) * time.Second / clockTicks
	if s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.pid)); err == nil {
		for line := range strings.Lines(string(s)) {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					hwm = kb << 10
				}
			}
		}
	}
	if !h.alive() { // the numbers may be another process's
		return 0, 0, false
	}
	return cpu, hwm, true
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

func (h *procHandle) close() {
	if h.pidfd >= 0 {
		_ = h.f.Close()
		h.pidfd = -1
	}
}

// errStopped is the error of a file operation in a container that
// stopped.
var errStopped = errors.New("the container stopped")

// containerRoot opens the container's root directory from the host.
func (c *hostContainer) containerRoot() (int, error) {
	if !c.running() {
		return -1, errStopped
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/root", c.initPid), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open the container's root: %w", err)
	}
	if !c.running() { // the PID may have been another process's by then
		unix.Close(fd)
		return -1, errStopped
	}
	return fd, nil
}

// close releases the pidfd.
func (c *hostContainer) close() {
	if c.initFd >= 0 {
		unix.Close(c.initFd)
		c.initFd = -1
	}
}

// openDir opens the directory at the absolute container path p, following
// no symbolic link on the way (the driver made or checked every component).
func (c *hostContainer) openDir(p string) (int, error) {
	fd, err := c.containerRoot()
	if err != nil {
		return -1, err
	}
	for _, name := range strings.Split(strings.Trim(path.Clean(p), "/"), "/") {
		if name == "" {
			continue
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, fmt.Errorf("open %s in the container: %s: %w", p, name, err)
		}
		fd = next
	}
	return fd, nil
}

// dirTimes are a directory's access and modification times.
type dirTimes struct{ atime, mtime unix.Timespec }

// times reads the times of the container directory p.
func (c *hostContainer) times(p string) (dirTimes, error) {
	fd, err := c.openDir(p)
	if err != nil {
		return dirTimes{}, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return dirTimes{}, err
	}
	return dirTimes{st.Atim, st.Mtim}, nil
}

// setTimes sets the times of the container directory p.
func (c *hostContainer) setTimes(p string, t dirTimes) error {
	fd, err := c.openDir(p)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.UtimesNanoAt(fd, ".", []unix.Timespec{t.atime, t.mtime}, 0)
}

// removeAll removes the container path p and everything under it; a
// missing p is no error.
func (c *hostContainer) removeAll(p string) error {
	parent, err := c.openDir(path.Dir(p))
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	if err := removeAt(parent, path.Base(p)); err != nil {
		return fmt.Errorf("remove %s in the container: %w", p, err)
	}
	return nil
}

// rmdir removes the empty container directory p; ok is false when it is
// not empty or gone.
func (c *hostContainer) rmdir(p string) bool {
	parent, err := c.openDir(path.Dir(p))
	if err != nil {
		return false
	}
	defer unix.Close(parent)
	return unix.Unlinkat(parent, path.Base(p), unix.AT_REMOVEDIR) == nil
}

// removeAt removes name in directory dirfd, recursively, never following a
// symbolic link.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	names, err := f.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			if err = removeAt(fd, n); err != nil {
				break
			}
		}
	}
	f.Close()
	if err != nil {
		return err
	}
	err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// signalOf is the signal an exec's exit code reports (the engine gives a
// process killed by signal s the code 128+s), or 0.
func signalOf(code int) syscall.Signal {
	if code > 128 && code < 128+65 {
		return syscall.Signal(code - 128)
	}
	return 0
}
