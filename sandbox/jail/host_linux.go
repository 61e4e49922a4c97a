package jail

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
)

// Host is what this machine lets jails do, probed once by Probe. Safe for
// concurrent use.
type Host struct {
	cfg        Config
	ns         namespaces
	nsErr      error    // no jail can be built here at all
	cg         *cgroups // controllers jails can use
	seccompErr error
}

// namespaces is how jails are isolated on this host.
type namespaces struct {
	userns bool // a user namespace per jail
	root   bool // the node is root: cgroups, setgroups, a dedicated uid
	hostID struct{ uid, gid int }
}

// Probe finds out what this host allows: user and other namespaces (by
// starting and reaping a jail init in them), the cgroup hierarchies with
// the memory, pids and cpu controllers (creating cfg.CgroupParent in each,
// delegating the controllers on cgroup v2, and removing the cgroups of jails
// whose node died) and seccomp. It never fails: what is missing shows in
// Err, Isolation and Notes.
func Probe(cfg Config) *Host {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Host{cfg: cfg}
	h.ns.root = os.Geteuid() == 0
	h.ns.hostID.uid, h.ns.hostID.gid = cfg.UID, cfg.GID
	if !h.ns.root {
		h.ns.hostID.uid, h.ns.hostID.gid = os.Getuid(), os.Getgid()
	}
	h.ns.userns = tryNamespaces(syscall.CLONE_NEWUSER, h.ns) == nil
	if !h.ns.userns && !h.ns.root {
		h.nsErr = errNoSandbox
	} else if err := tryNamespaces(0, h.ns); err != nil && !h.ns.userns {
		h.nsErr = fmt.Errorf("create namespaces: %w", err)
	}
	if h.ns.root {
		h.cg = detectCgroups(cfg.CgroupParent)
		if h.cg.swap != "" {
			cfg.Logger.Warn("process driver: " + h.cg.swap)
		}
	} else {
		h.cg = &cgroups{ctl: map[string]controller{}, notes: []string{"cgroups: the node is not root and cannot create cgroups; memory, pids and cpu limits do not hold"}}
	}
	h.seccompErr = seccompAvailable()
	return h
}

// tryNamespaces starts and reaps a process in the namespaces jails get
// (plus extra), to learn whether this host allows them. The child is the
// jail init without a configuration (no file descriptor 3): it exits at
// once with status 125.
func tryNamespaces(extra uintptr, ns namespaces) error {
	sys := &syscall.SysProcAttr{
		Cloneflags: extra | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET,
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	if extra&syscall.CLONE_NEWUSER != 0 {
		sys.UidMappings = []syscall.SysProcIDMap{{ContainerID: UID, HostID: ns.hostID.uid, Size: 1}}
		sys.GidMappings = []syscall.SysProcIDMap{{ContainerID: GID, HostID: ns.hostID.gid, Size: 1}}
		sys.GidMappingsEnableSetgroups = ns.root
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	p, err := startProcess(&os.ProcAttr{Env: []string{initEnv + "=" + initEnvValue}, Files: []*os.File{null, null, null}, Sys: sys})
	if err != nil {
		return err
	}
	_, err = p.Wait()
	return err // the exit status does not matter: the namespaces were created
}

// Err says why no jail can be built on this host, or nil.
func (h *Host) Err() error { return h.nsErr }

// Isolation says which parts of a jail hold on this host.
func (h *Host) Isolation() Isolation {
	_, mem := h.cg.ctl[ctlMemory]
	_, pids := h.cg.ctl[ctlPids]
	_, cpu := h.cg.ctl[ctlCPU]
	return Isolation{
		Namespaces: h.nsErr == nil,
		UserNS:     h.ns.userns,
		Memory:     mem,
		Pids:       pids,
		CPU:        cpu,
		Seccomp:    h.seccompErr == nil,
		Basics:     true,
	}
}

// Notes explains the parts that do not hold and how the others are built:
// one line each, for an offer's notes.
func (h *Host) Notes() []string {
	var out []string
	if h.nsErr != nil {
		out = append(out, h.nsErr.Error())
	}
	switch {
	case h.ns.userns && h.ns.root:
		out = append(out, fmt.Sprintf("workers run as uid %d in a user namespace mapped to host uid %d", UID, h.ns.hostID.uid))
	case h.ns.userns:
		out = append(out, fmt.Sprintf("workers run as uid %d in a user namespace mapped to the node's own uid %d", UID, h.ns.hostID.uid))
	case h.ns.root:
		out = append(out, fmt.Sprintf("user namespaces are not available: workers run as host uid %d without capabilities", h.ns.hostID.uid))
	}
	out = append(out, h.cg.describe()...)
	if _, ok := h.cg.ctl[ctlPids]; !ok {
		out = append(out, "without a pids cgroup, RLIMIT_NPROC caps processes per uid, shared by every worker of that uid")
	}
	if h.seccompErr != nil {
		out = append(out, h.seccompErr.Error())
	}
	return out
}

// CgroupParents lists the directories under which jails get their
// cgroups, one per hierarchy in use.
func (h *Host) CgroupParents() []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range h.cg.ctl {
		if !seen[c.parent] {
			seen[c.parent] = true
			out = append(out, c.parent)
		}
	}
	return out
}

// Chown gives path and everything under it to the jails' user, so that a
// jail can write there (an installer's target directory, bound with
// Write). It does nothing when the node is not root: its jails run as its
// own uid.
func (h *Host) Chown(path string) error {
	if !h.ns.root {
		return nil
	}
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			err = os.Lchown(p, h.ns.hostID.uid, h.ns.hostID.gid)
		}
		return err
	})
}
