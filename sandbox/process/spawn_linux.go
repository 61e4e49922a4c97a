package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// spawner starts every sandbox from one goroutine locked to its thread for
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
// would drop them otherwise) to build the sandbox: mount and pivot_root,
// host name and loopback, switching uid and gid, emptying the bounding set.
// It drops every one of them before it executes the worker.
var initCaps = []uintptr{
	unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_SETPCAP, unix.CAP_SYS_CHROOT,
}

// namespaces is how workers are isolated on this host.
type namespaces struct {
	userns bool // a user namespace per worker
	root   bool // the node is root: cgroups, setgroups, a dedicated uid
	hostID struct{ uid, gid int }
}

// sandboxProc is a started sandbox: the init, soon the worker, with the
// node's ends of its standard streams and its cgroup.
type sandboxProc struct {
	p      *os.Process
	pid    int
	stdin  *os.File // write end
	stdout *os.File // read end
	stderr *os.File // read end
	cg     *cgroup
}

// spawn starts a sandbox running c, in a new cgroup with lim when cgs has
// controllers, sharing the host's network namespace when hostNet. On error
// nothing is left running.
func spawn(ns namespaces, cgs *cgroups, service string, lim limits, hostNet bool, c *initConfig) (_ *sandboxProc, err error) {
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
		if cg, err = cgs.create(service, lim); err != nil {
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
		sys.UidMappings = []syscall.SysProcIDMap{{ContainerID: sandboxUID, HostID: ns.hostID.uid, Size: 1}}
		sys.GidMappings = []syscall.SysProcIDMap{{ContainerID: sandboxGID, HostID: ns.hostID.gid, Size: 1}}
		sys.GidMappingsEnableSetgroups = ns.root
		c.UID, c.GID = sandboxUID, sandboxGID
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
	fail := func(err error) (*sandboxProc, error) {
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
	return &sandboxProc{p: p, pid: p.Pid, stdin: inW, stdout: outR, stderr: errR, cg: cg}, nil
}

// killGroup kills the sandbox's process group and, through its cgroup,
// anything that left the group. Killing the worker alone would do: it is
// the init of its PID namespace, and the kernel kills every process of a
// namespace whose init dies.
func (s *sandboxProc) killGroup() {
	_ = syscall.Kill(-s.pid, syscall.SIGKILL)
	_ = syscall.Kill(s.pid, syscall.SIGKILL)
	s.cg.kill()
}

var errNoSandbox = errors.New("this host can create neither user namespaces nor, as a non-root user, any other: the process driver cannot isolate workers")
