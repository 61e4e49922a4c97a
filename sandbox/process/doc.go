// Package process is the process driver: it runs services written for
// Node.js, for Python, or as any executable that speaks the runtime protocol
// (docs/runtime-protocol.md) as workers, each in a Linux sandbox of its own.
// It holds the driver (Test, Offer, Deploy), its deployments (a warm pool
// per service in server mode, a fresh worker per invocation in command
// mode), the sandbox init, per-service dependency directories and the
// conformance kit for new language runtimes. The language shims are in
// runtimes/node and runtimes/python, the Go helper for exec workers in
// runtimes/go. The package does not judge outputs: sandbox.Call does.
//
// # The binary is its own sandbox init
//
// A worker is started by re-executing the node's own binary
// (/proc/self/exe) in new namespaces; that copy must call MaybeInit before
// anything else, which builds the sandbox and executes the worker in it.
// cmd/andromeda's main and every test binary that deploys on this driver
// (in TestMain) begin with:
//
//	process.MaybeInit()
//
// # Sandbox
//
// Each worker gets, in this order:
//
//   - namespaces: PID, mount, IPC, UTS and cgroup namespaces of its own, a
//     user namespace where the host allows it, and a network namespace with
//     only loopback (up) unless Spec.Network is any, which shares the
//     host's. A host list is treated like none: the worker has no direct
//     sockets and reaches those hosts through the http actions it returns
//     (the executor enforces the list); the offer says so. The worker is
//     PID 1 of its namespace: when it dies the kernel kills everything it
//     started, and from inside its parent is invisible (ppid 0).
//   - cgroups: a cgroup per worker under Config.CgroupParent in each
//     hierarchy that has the memory, pids or cpu controller, found per
//     controller, so that hybrid hosts work: cgroup v1 (memory.limit_in_bytes
//     and memory.memsw.limit_in_bytes, pids.max, cpu.cfs_quota_us; usage
//     from cpuacct.usage and memory.max_usage_in_bytes; OOM kills from
//     memory.oom_control) or v2 (memory.max, memory.swap.max=0,
//     memory.oom.group=1, pids.max, cpu.max; usage from cpu.stat and
//     memory.peak; OOM kills from memory.events). The worker is placed in
//     them before it runs any code of the service. Cgroups of a node that
//     died are removed by the next one.
//   - a file system built on a read-only skeleton root (a directory under
//     the work dir with only mount points), then pivot_root: /usr, /bin,
//     /lib… and the toolchain's directory read-only; a few files of /etc
//     (ld.so.cache, certificates, time zone; the resolver's files only with
//     network any; no accounts, no shadow); a private /proc with the host
//     kernel's sensitive entries masked; /dev with null, zero, full,
//     random, urandom and tty; /tmp and /dev/shm as tmpfs of Config.Scratch
//     bytes (counted in the worker's memory); the service at /service, its
//     shim at /runtime and its dependencies at /node_modules or
//     /deps/python, read-only. Nothing of the host is writable, the node's
//     data dir, keys and tokens are not there at all, and every mount is
//     nosuid and nodev. The root, the service, its shim and its
//     dependencies are read-only overlayfs mounts of their host
//     directories, not bind mounts, because the root field of
//     /proc/self/mountinfo names a bind mount's source path: the worker
//     sees none of the node's paths there (where overlayfs cannot be
//     mounted they fall back to bind mounts, which show them). What
//     mountinfo still shows is the host's system directories and the
//     toolchain's directory (a pyenv or nvm install, say), each at the path
//     it is mounted at, which the interpreter reports anyway.
//   - limits: RLIMIT_CORE 0, RLIMIT_NOFILE Config.Files, RLIMIT_NPROC when no
//     pids cgroup exists.
//   - identity: uid and gid 1000 in its user namespace, mapped to
//     Config.UID (default 65534) on a root host or to the node's own uid
//     otherwise (without user namespaces, a root node switches to
//     Config.UID directly); no supplementary groups; every capability
//     dropped, including the bounding and ambient sets; no_new_privs.
//   - the parent-death signal (SIGKILL, set again after the uid change):
//     a node killed with SIGKILL leaves no worker behind. Workers are
//     forked from one thread locked for the life of the node, because the
//     kernel sends that signal when the forking thread ends.
//   - a seccomp filter refusing with EPERM what no service needs: mount and
//     pivot_root and the new mount API, ptrace and process_vm_*, kexec,
//     module loading, bpf, perf_event_open, userfaultfd, io_uring, reboot,
//     swap, the keyring, unshare, setns and namespace flags of clone (clone3
//     gets ENOSYS), clock setting, quotactl, open_by_handle_at, syslog,
//     sethostname. On x86-64, a call with the x32 ABI (the number with bit
//     30 set) fails with EPERM like those, whatever its number; a call with
//     another architecture's convention (i386's int 0x80 on x86-64, AArch32
//     on arm64), whose numbers are another table's, kills the process with
//     SIGSYS.
//   - a clean environment: PATH, HOME=/tmp, TMPDIR=/tmp and LANG only.
//
// A layer the host cannot provide (no cgroups, not root and no user
// namespaces, no seccomp) shows false in Offer().Isolation with the reason
// in the notes; Test and Deploy then fail unless Config.AllowMissing lists
// the layer, so that the operator, and policies reading the offer, decide.
//
// # Workers and failures
//
// A worker that dies is restarted with exponential backoff and jitter (see
// Config.Backoff); its invocations in flight end crashed with the exit
// status and the tail of its standard error, or oom. A deployment whose
// workers crash Config.UnhealthyAfter times in a row is unhealthy (the
// deployment's Health method) until a worker answers an invocation again,
// and fails invocations at once while none is running. A deadline or a
// cancellation sends the worker a cancel message; an invocation still
// running Config.CancelGrace later gets the worker's whole process group
// and PID namespace killed.
//
// # Logs
//
// What a worker writes to standard error and sends in log messages goes to
// Spec.Log through a sandbox.LogLimiter of the deployment, with
// sandbox.DefaultLogLimit: lines cut at 4 KiB, 256 KiB per run, 8 MiB per
// service and hour, 100 lines a second after a burst of 1000; what is
// dropped is counted in one marker line when lines get through again and
// when the run ends. A line is a run's when the worker sends it in a log
// message of that invocation, or writes it to standard error while that
// invocation is the only one in flight on it (always so in command mode);
// a run's lines go to the sink the invocation's context carries
// (sandbox.WithRunLog), else to Spec.Log. The driver holds at most 16 KiB
// of a line of standard error, whatever its length, and max_line bytes of
// standard output, where anything but a protocol message is a protocol
// error that kills the worker.
//
// # Dependencies
//
// A Node.js service's package.json is installed with npm into its own
// node_modules, a Python service's requirements.txt with pip into its own
// target directory, under WorkDir/deps/<service>, from Config.Registries,
// inside a sandbox like a worker's. No service-supplied code runs at
// install: a service names its dependencies by registry name and version
// only (no local paths, URLs, VCS specs or installer options; see
// DepSourceError and Config.AllowAnyDepSource), pip installs wheels only
// and npm runs no scripts. The installer has a network namespace of its
// own with only loopback; when the registry is a URL, an egress proxy in
// the node, reached through a unix socket bind-mounted into the sandbox,
// lets it reach the registry's host and port and nothing else (egress.go).
// ListDeps, AddDep and RemoveDep are `andromeda deps ls|add|rm`.
package process
