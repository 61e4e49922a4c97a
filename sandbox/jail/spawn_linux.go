package jail

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Template is a Spec made ready to start: its skeleton root exists and its
// mounts are computed, so that starting one more jail of the kind costs
// only the spawn. Safe for concurrent use.
type Template struct {
	h       *Host
	name    string
	lim     Limits
	hostNet bool
	c       initConfig // copied per jail
}

// Prepare makes s ready to start: it computes the jail's mounts and creates
// the skeleton root they are mounted on under Config.Dir (shared by every
// jail with the same layout).
func (h *Host) Prepare(s Spec) (*Template, error) {
	ops, skel := build(s)
	root, err := skeletonDir(h.cfg.Dir, skel)
	if err != nil {
		return nil, err
	}
	c := initConfig{
		Root:     root,
		Mounts:   ops,
		Hostname: Hostname,
		Loopback: !s.HostNetwork,
		Files:    s.Files,
		Seccomp:  h.seccompErr == nil,
		Dir:      s.Dir,
		Argv:     s.Argv,
		Env:      s.Env,
		Builtin:  s.Builtin,
	}
	if _, ok := h.cg.ctl[ctlPids]; !ok {
		c.NProc = s.Limits.Pids
	}
	return &Template{h: h, name: s.Name, lim: s.Limits, hostNet: s.HostNetwork, c: c}, nil
}

// Start starts a jail of the template: in a new cgroup with its limits
// when the host has controllers, as PID 1 of its own PID namespace. On
// error nothing is left running. The caller must Wait for the process and
// Release it.
func (t *Template) Start() (*Process, error) {
	c := t.c
	return spawn(t.h.ns, t.h.cg, t.name, t.lim, t.hostNet, &c)
}

// Process is a started jail: its init, soon its command, with the node's
// ends of its standard streams and its cgroup. The node owns Stdin,
// Stdout and Stderr and closes them.
type Process struct {
	Pid    int
	Stdin  *os.File // write end
	Stdout *os.File // read end
	Stderr *os.File // read end

	p  *os.Process
	cg *cgroup
}

// Wait waits for the jail's process to exit (see os.Process.Wait).
func (p *Process) Wait() (*os.ProcessState, error) { return p.p.Wait() }

// Kill kills the jail's process group and, through its cgroup, anything
// that left the group. Killing its process alone would do: it is the init
// of its PID namespace, and the kernel kills every process of a namespace
// whose init dies.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	p.cg.kill()
}

// CPUTime returns the CPU time the jail's processes used so far, or -1
// without a CPU accounting cgroup.
func (p *Process) CPUTime() time.Duration { return p.cg.cpuTime() }

// PeakMemory returns the jail's memory high-water mark, or 0 without a
// memory cgroup that records it.
func (p *Process) PeakMemory() int64 { return p.cg.peakMemory() }

// OOMKills returns how many processes the kernel killed in the jail for
// exceeding its memory limit, or -1 when the kernel does not say.
func (p *Process) OOMKills() int { return p.cg.oomKills() }

// WatchThrash watches the jail's memory cgroup for thrashing at its limit
// until stop is closed (see the package's WatchThrash); nothing without
// a memory cgroup.
func (p *Process) WatchThrash(after time.Duration, onThrash func(reason string), stop <-chan struct{}) {
	if p.cg != nil {
		WatchThrash(p.cg.mem, after, onThrash, stop)
	}
}

// Release removes the jail's cgroups once its processes are gone,
// retrying for up to wait while the kernel tears them down.
func (p *Process) Release(wait time.Duration) error { return p.cg.remove(wait) }

// spawner starts every jail from one goroutine locked to its thread for
// the life of the process: the kernel sends the parent-death signal when the
// thread that forked a child exits, not the process (go.dev/issue/27505), and
// a thread the runtime may retire would kill workers with it.
var spawner struct {
	once sync.Once
	reqs chan spawnRequest
}

type spawnRequest struct {
	attr  *os.ProcAttr
	reply chan spawnResult
}

type spawnResult struct {
	p   *os.Process
	err error
}

func startProcess(attr *os.ProcAttr) (*os.Process, error) {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread must outlive every worker
			for r := range spawner.reqs {
				p, err := os.StartProcess("/proc/self/exe", []string{initArg0}, r.attr)
				r.reply <- spawnResult{p, err}
			}
		}()
	})
	reply := make(chan spawnResult, 1)
	spawner.reqs <- spawnRequest{attr, reply}
	r := <-reply
	return r.p, r.err
}

// initCaps are the capabilities the init keeps across its execve (as
// ambient capabilities: in a user namespace, where it is not root, execve
// would drop them otherwise) to build the jail: mount and pivot_root,
// host name and loopback, switching uid and gid, emptying the bounding set.
// It drops every one of them before it executes the command.
var initCaps = []uintptr{
	unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_SETPCAP, unix.CAP_SYS_CHROOT,
}

// spawn starts a jail running c, in a new cgroup with lim when cgs has
// controllers, sharing the host's network namespace when hostNet. On error
// nothing is left running.
func spawn(ns namespaces, cgs *cgroups, name string, lim Limits, hostNet bool, c *initConfig) (_ *Process, err error) {
	var closers []*os.File
	defer func() {
		for _, f := range closers {
			f.Close()
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			closers = append(closers, r, w)
		}
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	outR, outW, err := pipe()
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	errR, errW, err := pipe()
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	cfgR, cfgW, err := pipe()
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}

	var cg *cgroup
	if cgs != nil && len(cgs.ctl) > 0 {
		if cg, err = cgs.create(name, lim); err != nil {
			return nil, fmt.Errorf("spawn: %w", err)
		}
	}
	defer func() {
		if err != nil {
			_ = cg.remove(0)
		}
	}()

	flags := uintptr(syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	if !hostNet {
		flags |= syscall.CLONE_NEWNET
	}
	sys := &syscall.SysProcAttr{
		Cloneflags:  flags,
		Setpgid:     true,
		Pdeathsig:   syscall.SIGKILL,
		AmbientCaps: initCaps,
	}
	c.UID, c.GID = ns.hostID.uid, ns.hostID.gid
	c.Setgroups = ns.root
	if ns.userns {
		sys.Cloneflags |= syscall.CLONE_NEWUSER
		sys.UidMappings = []syscall.SysProcIDMap{{ContainerID: UID, HostID: ns.hostID.uid, Size: 1}}
		sys.GidMappings = []syscall.SysProcIDMap{{ContainerID: GID, HostID: ns.hostID.gid, Size: 1}}
		sys.GidMappingsEnableSetgroups = ns.root
		c.UID, c.GID = UID, GID
	}
	attr := &os.ProcAttr{
		Env:   []string{initEnv + "=" + initEnvValue},
		Files: []*os.File{inR, outW, errW, cfgR},
		Sys:   sys,
	}
	p, err := startProcess(attr)
	if err != nil {
		return nil, fmt.Errorf("spawn sandbox: %w", err)
	}
	fail := func(err error) (*Process, error) {
		_ = p.Kill()
		_, _ = p.Wait()
		return nil, err
	}
	if cg != nil {
		if err := cg.add(p.Pid); err != nil {
			return fail(fmt.Errorf("spawn: %w", err))
		}
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return fail(fmt.Errorf("spawn: %w", err))
	}
	if _, err := cfgW.Write(raw); err != nil {
		return fail(fmt.Errorf("spawn: send config: %w", err))
	}
	// The node keeps its own ends only.
	for _, f := range []*os.File{inR, outW, errW, cfgR, cfgW} {
		f.Close()
	}
	closers = nil
	return &Process{p: p, Pid: p.Pid, Stdin: inW, Stdout: outR, Stderr: errR, cg: cg}, nil
}
