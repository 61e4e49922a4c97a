package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The marker of the jail init: Start runs /proc/self/exe with argv[0]
// initArg0 and initEnv=initEnvValue (and nothing else in its environment),
// and the configuration on file descriptor 3.
const (
	initArg0     = "andromeda-sandbox-init"
	initEnv      = "ANDROMEDA_SANDBOX_INIT"
	initEnvValue = "3"
)

// MaybeInit turns the current process into a jail init when Start started
// it as one, and otherwise returns at once. A jail is started by
// re-executing the node's own binary (/proc/self/exe) in new namespaces;
// that copy must reach MaybeInit before it does anything else, so every
// binary that starts jails calls it first thing in main (and a test binary
// first thing in TestMain); the process driver's process.MaybeInit does,
// with its built-in workers.
//
// In an init, MaybeInit never returns: it reads its configuration from file
// descriptor 3, builds the jail's file system (a read-only skeleton root
// with read-only binds of /usr, the toolchain and the Spec's binds, a
// private /proc, /dev and scratch /tmp), sets the host name, brings up the
// loopback interface, sets rlimits, drops to the unprivileged uid and every
// capability, sets no_new_privs and the parent-death signal, installs the
// seccomp filter and executes the command, or runs builtins[Spec.Builtin]
// and exits with its status. A failure at any step exits with status
// ExitSetupFailed and the reason on standard error: a jail is complete or
// it does not start. The same binary, executed inside a jail of Run as its
// egress forwarder (egress_linux.go), never returns from MaybeInit either.
func MaybeInit(builtins map[string]func() int) {
	if isEgressForwarder() { // a jail's egress forwarder (egress_linux.go)
		os.Exit(egressForward())
	}
	if len(os.Args) == 0 || os.Args[0] != initArg0 || os.Getenv(initEnv) != initEnvValue {
		return
	}
	// Every step below that is per thread (capabilities, no_new_privs, the
	// parent-death signal, the filter) must happen on the thread that
	// executes the command.
	runtime.LockOSThread()
	err := jailInit(builtins)
	fmt.Fprintf(os.Stderr, "andromeda sandbox: %v\n", err)
	os.Exit(ExitSetupFailed)
}

// jailInit runs the init's steps; it returns only on failure.
func jailInit(builtins map[string]func() int) error {
	// First, so that a node that dies from here on takes the init with it;
	// a node that died before leaves the configuration pipe at EOF.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("set parent-death signal: %w", err)
	}
	f := os.NewFile(3, "config")
	raw, err := io.ReadAll(io.LimitReader(f, 1<<20))
	f.Close()
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if len(raw) == 0 {
		return errors.New("read config: empty (the node went away)")
	}
	var c initConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	// Now inside its cgroups: hide their host paths.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("unshare cgroup namespace: %w", err)
	}
	if err := buildRoot(&c); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(c.Hostname)); err != nil {
		return fmt.Errorf("set host name: %w", err)
	}
	if c.Loopback {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	if err := setRlimits(c); err != nil {
		return err
	}
	if err := os.Chdir(c.Dir); err != nil {
		return fmt.Errorf("chdir %s: %w", c.Dir, err)
	}
	if err := dropPrivileges(c); err != nil {
		return err
	}
	// Changing credentials clears the parent-death signal: set it again.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("set parent-death signal: %w", err)
	}
	if c.Seccomp {
		if err := installSeccomp(); err != nil {
			return err
		}
	} else if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	if c.Builtin != "" {
		f, ok := builtins[c.Builtin]
		if !ok {
			return fmt.Errorf("no built-in %q in this binary", c.Builtin)
		}
		os.Exit(f())
	}
	if len(c.Argv) == 0 {
		return errNoCommand
	}
	err = syscall.Exec(c.Argv[0], c.Argv, c.Env)
	return fmt.Errorf("execute %s: %w", c.Argv[0], err)
}

// buildRoot mounts the skeleton as a new root with everything on top of it,
// read-only where asked, and pivots into it.
func buildRoot(c *initConfig) error {
	// Nothing mounted here may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	root := c.Root
	if err := mountRoot(root); err != nil { // layout_linux.go
		return err
	}
	for _, op := range c.Mounts {
		if err := mount(root, op); err != nil {
			return err
		}
	}
	if err := remountReadOnly(root, root, false, false, false); err != nil {
		return fmt.Errorf("remount root read-only: %w", err)
	}
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("chdir to new root: %w", err)
	}
	// pivot_root(".", ".") stacks the old root under the new one; detaching
	// it leaves nothing of the host but what was bound in.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// mount performs one mount operation under root.
func mount(root string, op mountOp) error {
	target := filepath.Join(root, op.Target)
	fail := func(err error) error { return fmt.Errorf("mount %s on %s: %w", op.Kind, op.Target, err) }
	base := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if op.NoExec {
		base |= unix.MS_NOEXEC
	}
	switch op.Kind {
	case "bind":
		if err := unix.Mount(op.Source, target, "", unix.MS_BIND, ""); err != nil {
			return fail(fmt.Errorf("%s: %w", op.Source, err))
		}
		if err := remountReadOnly(op.Source, target, op.Write, op.NoExec, op.Dev); err != nil {
			return fail(err)
		}
	case "overlay":
		return mountOverlay(root, op) // layout_linux.go
	case "tmpfs":
		if err := unix.Mount("tmpfs", target, "tmpfs", base, op.Data); err != nil {
			return fail(err)
		}
	case "proc":
		if err := unix.Mount("proc", target, "proc", base|unix.MS_NOEXEC, ""); err != nil {
			return fail(err)
		}
	case "mask":
		if _, err := os.Stat(target); err != nil {
			return nil // not in this kernel
		}
		if err := unix.Mount("/dev/null", target, "", unix.MS_BIND, ""); err != nil {
			return fail(err)
		}
	case "rebind":
		if _, err := os.Stat(target); err != nil {
			return nil
		}
		if err := unix.Mount(target, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fail(err)
		}
		if err := remountReadOnly(target, target, false, true, false); err != nil {
			return fail(err)
		}
	default:
		return fail(errors.New("unknown kind"))
	}
	return nil
}

// remountReadOnly remounts the bind mount at target read-only (unless
// write), nosuid, nodev (unless dev: a device node) and noexec if asked,
// keeping the flags the kernel locks on a mount that came from a more
// privileged namespace (those of source).
func remountReadOnly(source, target string, write, noexec, dev bool) error {
	var st unix.Statfs_t
	if err := unix.Statfs(source, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", source, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID)
	if !dev {
		flags |= unix.MS_NODEV
	}
	for _, f := range []struct{ st, ms uintptr }{
		{unix.ST_RDONLY, unix.MS_RDONLY}, {unix.ST_NOEXEC, unix.MS_NOEXEC}, {unix.ST_NODEV, unix.MS_NODEV},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f.st != 0 {
			flags |= f.ms
		}
	}
	if !write {
		flags |= unix.MS_RDONLY
	}
	if noexec {
		flags |= unix.MS_NOEXEC
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s: %w", target, err)
	}
	return nil
}

// loopbackUp brings up lo in the jail's own network namespace, so that a
// command can talk to itself over 127.0.0.1 and nothing else.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: set up: %w", err)
	}
	return nil
}

// setRlimits sets the jail's resource limits: no core dumps, c.Files open
// files and, where no pids cgroup caps processes, c.NProc processes.
func setRlimits(c initConfig) error {
	set := func(name string, res int, v uint64) error {
		lim := unix.Rlimit{Cur: v, Max: v}
		var cur unix.Rlimit
		if err := unix.Getrlimit(res, &cur); err == nil && cur.Max < v {
			lim = unix.Rlimit{Cur: cur.Max, Max: cur.Max} // cannot raise the hard limit: keep it
		}
		if err := unix.Setrlimit(res, &lim); err != nil {
			return fmt.Errorf("set rlimit %s: %w", name, err)
		}
		return nil
	}
	if err := set("core", unix.RLIMIT_CORE, 0); err != nil {
		return err
	}
	if c.Files > 0 {
		if err := set("nofile", unix.RLIMIT_NOFILE, uint64(c.Files)); err != nil {
			return err
		}
	}
	if c.NProc > 0 {
		if err := set("nproc", unix.RLIMIT_NPROC, uint64(c.NProc)); err != nil {
			return err
		}
	}
	return nil
}

// dropPrivileges empties the capability bounding set, switches to c's uid
// and gid without supplementary groups, and clears every capability set, so
// that nothing the jail executes can regain one.
func dropPrivileges(c initConfig) error {
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for capability := 0; capability <= last; capability++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(capability), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", capability, err)
		}
	}
	if c.Setgroups {
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("clear supplementary groups: %w", err)
		}
	}
	if err := syscall.Setresgid(c.GID, c.GID, c.GID); err != nil {
		return fmt.Errorf("set gid %d: %w", c.GID, err)
	}
	if err := syscall.Setresuid(c.UID, c.UID, c.UID); err != nil {
		return fmt.Errorf("set uid %d: %w", c.UID, err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	return nil
}
