package jail

import (
	"errors"
	"log/slog"
	"time"
)

// What every jail looks like from inside.
const (
	// UID and GID are the jail's user and group inside its user namespace
	// (mapped to Config.UID and Config.GID, or to the node's own ids).
	UID = 1000
	GID = 1000
	// Path is the PATH a jail's command is usually given.
	Path = "/usr/local/bin:/usr/bin:/bin"
	// Scratch is the jail's private writable directory, a tmpfs of
	// Spec.Scratch bytes: the usual HOME and TMPDIR.
	Scratch = "/tmp"
	// Hostname is every jail's host name.
	Hostname = "sandbox"
	// ExitSetupFailed is the exit status of a jail whose init could not
	// build it; the reason is on its standard error.
	ExitSetupFailed = 125
	// EgressProxy is the HTTP proxy through which a command run with
	// Spec.Egress reaches its hosts (see Host.Run).
	EgressProxy = "http://" + egressAddr
)

// egressAddr is where the egress forwarder listens inside an installer's
// jail: its own loopback, always free.
const egressAddr = "127.0.0.1:3128"

// Config is what Probe needs to know about the node. The zero value
// probes a host whose jails map to uid and gid 0 when the node is root:
// set UID and GID.
type Config struct {
	// Dir holds the jails' own files: the skeleton roots jails are mounted
	// on (roots/) and the egress proxies' sockets (egress/). It must be
	// private to the node; Prepare and Run create what they need in it.
	Dir string
	// UID and GID are the host user and group jails run as when the node
	// runs as root; a node that is not root runs them as its own uid.
	UID, GID int
	// CgroupParent is the cgroup under which each jail gets its own, in
	// every hierarchy used: relative to the node's own cgroup, or absolute
	// from the hierarchy's root.
	CgroupParent string
	// Logger receives the egress proxies' refusals. Default slog.Default().
	Logger *slog.Logger
}

// Spec is one kind of jail: what it shows of the host, its network, its
// limits and the command it runs.
type Spec struct {
	// Name names the jail's cgroups (w-<node pid>-<seq>-<Name>) and its
	// egress proxy's log lines.
	Name string
	// Binds are host directories and files shown inside: a directory shown
	// read-only is an overlay of its host directory, which keeps its host
	// path out of /proc/self/mountinfo.
	Binds []Bind
	// Tools are host directories outside /usr the command needs (a
	// toolchain's), shown read-only at the same path.
	Tools []string
	// HostNetwork shares the host's network namespace and shows its
	// resolver configuration; otherwise the jail has a network namespace
	// of its own with only loopback, up.
	HostNetwork bool
	// Scratch is the size of /tmp and of /dev/shm; at least 1 MiB.
	Scratch int64
	// Limits are enforced by the jail's cgroup, Limits.Pids by
	// RLIMIT_NPROC where the host has no pids cgroup.
	Limits Limits
	// Files is RLIMIT_NOFILE; 0 keeps the node's.
	Files int
	// Dir is the working directory, Argv the command (Argv[0] a path
	// inside the jail) and Env its whole environment.
	Dir  string
	Argv []string
	Env  []string
	// Builtin, when set, runs the function MaybeInit was given under this
	// name inside the complete jail, in place of Argv.
	Builtin string
	// Egress lists the host:port pairs a command started by Run may reach
	// through the egress proxy (EgressProxy); nothing else is reachable.
	// Run only; the jail never shares the host's network then.
	Egress []string
}

// Bind is one host directory or file shown inside a jail at Target:
// read-only unless Write, nosuid and nodev always, noexec when NoExec.
type Bind struct {
	Source, Target string
	Write, NoExec  bool
}

// Limits are what a jail's cgroup enforces; zero leaves a limit unset.
type Limits struct {
	Memory int64   // bytes, swap included where the kernel accounts it
	Pids   int     // processes and threads
	CPU    float64 // CPUs' worth of time
}

// Isolation says which parts of a jail hold on this host.
type Isolation struct {
	// Namespaces: own PID, mount, IPC, UTS and network namespaces, and
	// with them the read-only root, the private scratch, no node data, an
	// unprivileged uid and the kill of the whole PID namespace.
	Namespaces bool
	UserNS     bool // a user namespace too: root inside maps to nothing outside
	Memory     bool // cgroup memory limit (v1 or v2)
	Pids       bool // cgroup pids limit
	CPU        bool // cgroup CPU quota
	Seccomp    bool // the system call filter
	// Basics: rlimits, no_new_privs and the parent-death signal, which
	// every Linux host has.
	Basics bool
}

var (
	errNoSandbox = errors.New("this host can create neither user namespaces nor, as a non-root user, any other: the process driver cannot isolate workers")
	errNoCommand = errors.New("no command to execute")
)

// tailSize is how much of a command's output Run keeps.
const tailSize = 32 << 10

// releaseWait is how long Run waits for a jail's cgroups to empty.
const releaseWait = 2 * time.Second
