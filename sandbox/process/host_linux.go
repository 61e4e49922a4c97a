package process

import (
	"fmt"
	"os"
	"syscall"
)

// host is what this machine lets the driver do, probed once per driver.
type host struct {
	ns         namespaces
	nsErr      error    // the driver cannot create namespaces at all
	cg         *cgroups // controllers the driver can use
	seccompErr error
}

// host probes the machine on first use.
func (d *Driver) host() *host {
	d.hostOnce.Do(func() { d.h = probeHost(d.cfg) })
	return d.h
}

func probeHost(cfg Config) *host {
	h := &host{}
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
	} else {
		h.cg = &cgroups{ctl: map[string]controller{}, notes: []string{"cgroups: the node is not root and cannot create cgroups; memory, pids and cpu limits do not hold"}}
	}
	h.seccompErr = seccompAvailable()
	return h
}

// tryNamespaces starts and reaps a process in the namespaces workers get
// (plus extra), to learn whether this host allows them. The child is the
// sandbox init without a configuration (no file descriptor 3): it exits at
// once with status 125.
func tryNamespaces(extra uintptr, ns namespaces) error {
	sys := &syscall.SysProcAttr{
		Cloneflags: extra | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET,
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	if extra&syscall.CLONE_NEWUSER != 0 {
		sys.UidMappings = []syscall.SysProcIDMap{{ContainerID: sandboxUID, HostID: ns.hostID.uid, Size: 1}}
		sys.GidMappings = []syscall.SysProcIDMap{{ContainerID: sandboxGID, HostID: ns.hostID.gid, Size: 1}}
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

// isolation says, for every layer, whether it holds on this host.
func (h *host) isolation() map[string]bool {
	ns := h.nsErr == nil
	_, mem := h.cg.ctl[ctlMemory]
	_, pids := h.cg.ctl[ctlPids]
	_, cpu := h.cg.ctl[ctlCPU]
	return map[string]bool{
		LayerPIDNS:      ns,
		LayerMountNS:    ns,
		LayerIPCNS:      ns,
		LayerUTSNS:      ns,
		LayerNetNS:      ns,
		LayerUserNS:     ns && h.ns.userns,
		LayerReadOnly:   ns,
		LayerScratch:    ns,
		LayerNoData:     ns,
		LayerNoEnv:      true,
		LayerUID:        ns,
		LayerMemory:     mem,
		LayerPids:       pids,
		LayerCPU:        cpu,
		LayerRlimits:    true,
		LayerSeccomp:    h.seccompErr == nil,
		LayerNoNewPrivs: true,
		LayerPdeathsig:  true,
		LayerGroupKill:  ns,
		LayerTimeout:    true,
	}
}

// notes explains the layers that do not hold and how the others are built.
func (h *host) notes() []string {
	var out []string
	if h.nsErr != nil {
		out = append(out, h.nsErr.Error())
	}
	switch {
	case h.ns.userns && h.ns.root:
		out = append(out, fmt.Sprintf("workers run as uid %d in a user namespace mapped to host uid %d", sandboxUID, h.ns.hostID.uid))
	case h.ns.userns:
		out = append(out, fmt.Sprintf("workers run as uid %d in a user namespace mapped to the node's own uid %d", sandboxUID, h.ns.hostID.uid))
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
