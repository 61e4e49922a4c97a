// Package jail builds Linux jails: a process in namespaces, cgroups and a
// file system of its own, under seccomp, with nothing of the host it was
// not given. It holds host probing (Probe, Host.Isolation), the file
// system layout, cgroups v1 and v2, the seccomp filter, rlimits and
// identity, the re-executed init (MaybeInit), spawning (Host.Prepare,
// Template.Start) and running a command to its end (Host.Run), optionally
// with an egress proxy as its only way out. It does not know languages, the
// runtime protocol, services or drivers: the process driver
// (sandbox/process) runs its workers in jails, and its dependency installer
// (sandbox/process/deps) runs npm and pip in them. It imports no driver and
// nothing of the node.
//
// # The binary is its own init
//
// A jail is started by re-executing the node's own binary (/proc/self/exe)
// in new namespaces; that copy must call MaybeInit before anything else,
// which builds the jail and executes its command in it.
//
// # What a jail is
//
// Each jail gets, in this order:
//
//   - namespaces: PID, mount, IPC, UTS and cgroup namespaces of its own, a
//     user namespace where the host allows it, and a network namespace with
//     only loopback (up) unless Spec.HostNetwork, which shares the host's.
//     The jail's process is PID 1 of its namespace: when it dies the kernel
//     kills everything it started, and from inside its parent is invisible
//     (ppid 0).
//   - cgroups: a cgroup per jail under Config.CgroupParent in each
//     hierarchy that has the memory, pids or cpu controller, found per
//     controller, so that hybrid hosts work: cgroup v1 (memory.limit_in_bytes
//     and memory.memsw.limit_in_bytes, pids.max, cpu.cfs_quota_us; usage
//     from cpuacct.usage and memory.max_usage_in_bytes; OOM kills from
//     memory.oom_control) or v2 (memory.max, memory.swap.max=0,
//     memory.oom.group=1, pids.max, cpu.max; usage from cpu.stat and
//     memory.peak; OOM kills from memory.events). The jail is placed in
//     them before it runs any code of its command. Cgroups of a node that
//     died are removed by the next Probe.
//   - a file system built on a read-only skeleton root (a directory under
//     Config.Dir with only mount points), then pivot_root: /usr, /bin,
//     /lib… and Spec.Tools read-only; a few files of /etc (ld.so.cache,
//     certificates, time zone; the resolver's files only with the host's
//     network; no accounts, no shadow); a private /proc with the host
//     kernel's sensitive entries masked; /dev with null, zero, full,
//     random, urandom and tty; /tmp and /dev/shm as tmpfs of Spec.Scratch
//     bytes (counted in the jail's memory); Spec.Binds, read-only unless
//     Write. Nothing of the host is writable unless bound with Write, and
//     every mount is nosuid and nodev. The root and every directory bound
//     read-only are read-only overlayfs mounts of their host directories,
//     not bind mounts, because the root field of /proc/self/mountinfo
//     names a bind mount's source path: the jail sees none of the node's
//     paths there (where overlayfs cannot be mounted they fall back to bind
//     mounts, which show them). What mountinfo still shows is the host's
//     system directories and Spec.Tools, each at the path it is mounted
//     at.
//   - limits: RLIMIT_CORE 0, RLIMIT_NOFILE Spec.Files, RLIMIT_NPROC when no
//     pids cgroup exists.
//   - identity: uid and gid 1000 in its user namespace, mapped to
//     Config.UID on a root host or to the node's own uid otherwise
//     (without user namespaces, a root node switches to Config.UID
//     directly); no supplementary groups; every capability dropped,
//     including the bounding and ambient sets; no_new_privs.
//   - the parent-death signal (SIGKILL, set again after the uid change):
//     a node killed with SIGKILL leaves no jail behind. Jails are forked
//     from one thread locked for the life of the node, because the kernel
//     sends that signal when the forking thread ends.
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
//   - exactly the environment of Spec.Env.
//
// A part the host cannot provide (no cgroups, not root and no user
// namespaces, no seccomp) shows false in Host.Isolation with the reason in
// Host.Notes; the caller decides whether to run without it.
package jail
