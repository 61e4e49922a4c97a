//go:build linux && (amd64 || arm64)

package jail

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// deniedSyscalls are the system calls no service needs and the sandbox
// refuses with EPERM: mounting and changing root, tracing and reading other
// processes' memory, loading kernels, modules and BPF programs, rebooting,
// swap, the kernel keyring, entering or creating namespaces, setting the
// clock, file handles (the "shocker" escape), perf, userfaultfd, io_uring
// (a large and often vulnerable kernel surface), the kernel log and host
// names. clone is allowed without namespace flags; clone3, whose flags a
// classic BPF filter cannot read, fails with ENOSYS so that libc falls back
// to clone. Architecture-specific additions are in seccomp_<arch>.go.
var deniedSyscalls = append([]uint32{
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT,
	unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT, unix.SYS_FSPICK,
	unix.SYS_MOVE_MOUNT, unix.SYS_OPEN_TREE, unix.SYS_MOUNT_SETATTR,
	unix.SYS_LISTMOUNT, unix.SYS_STATMOUNT,
	unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV,
	unix.SYS_KCMP, unix.SYS_PIDFD_GETFD,
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD,
	unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
	unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_REBOOT, unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_ACCT,
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
	unix.SYS_UNSHARE, unix.SYS_SETNS,
	unix.SYS_SETTIMEOFDAY, unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_ADJTIMEX,
	unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD,
	unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_NAME_TO_HANDLE_AT,
	unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
	unix.SYS_SYSLOG, unix.SYS_LOOKUP_DCOOKIE, unix.SYS_VHANGUP, unix.SYS_NFSSERVCTL,
	unix.SYS_SETHOSTNAME, unix.SYS_SETDOMAINNAME,
}, archDenied...)

// cloneNamespaces are the clone flags that create namespaces (CLONE_NEWTIME
// shares its bit with the exit signal in clone and is only meaningful to
// unshare and clone3, both refused).
const cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// seccompAvailable reports whether the kernel supports seccomp filters that
// return an errno.
func seccompAvailable() error {
	b, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	if !strings.Contains(string(b), "errno") {
		return errors.New("seccomp: the kernel cannot return errno from a filter")
	}
	return nil
}

// seccompProgram is the BPF filter: kill a process calling with another
// audit architecture's convention (i386's int 0x80 on x86-64: its numbers
// are another table's), refuse x32-ABI calls (x32Bit), deniedSyscalls and
// namespace flags of clone with EPERM and clone3 with ENOSYS, allow the
// rest. TestForeignABIs makes both kinds of call.
func seccompProgram() []unix.SockFilter {
	const (
		offNr   = 0  // offsetof(struct seccomp_data, nr)
		offArch = 4  // offsetof(struct seccomp_data, arch)
		offArg0 = 16 // offsetof(struct seccomp_data, args[0]), low half on little-endian
	)
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jump := func(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
	}
	ld := func(off uint32) unix.SockFilter { return stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
	ret := func(v uint32) unix.SockFilter { return stmt(unix.BPF_RET|unix.BPF_K, v) }

	// The program ends with three returns; jumps are forward offsets to them.
	var prog []unix.SockFilter
	type fix struct {
		at     int
		target int // 0 allow, 1 deny, 2 nosys
		onTrue bool
	}
	var fixes []fix
	prog = append(prog,
		ld(offArch),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, auditArch, 1, 0),
		ret(unix.SECCOMP_RET_KILL_PROCESS),
		ld(offNr),
	)
	if x32Bit != 0 {
		fixes = append(fixes, fix{len(prog), 1, true})
		prog = append(prog, jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32Bit, 0, 0))
	}
	for _, nr := range deniedSyscalls {
		fixes = append(fixes, fix{len(prog), 1, true})
		prog = append(prog, jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, nr, 0, 0))
	}
	fixes = append(fixes, fix{len(prog), 2, true})
	prog = append(prog, jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.SYS_CLONE3, 0, 0))
	fixes = append(fixes, fix{len(prog), 0, false})
	prog = append(prog, jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.SYS_CLONE, 0, 0))
	prog = append(prog, ld(offArg0))
	fixes = append(fixes, fix{len(prog), 1, true}, fix{len(prog), 0, false})
	prog = append(prog, jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, cloneNamespaces, 0, 0))
	allow := len(prog)
	prog = append(prog,
		ret(unix.SECCOMP_RET_ALLOW),
		ret(unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM)),
		ret(unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS)),
	)
	for _, f := range fixes {
		off := allow + f.target - f.at - 1
		if off > 255 {
			panic("seccomp program too long for a BPF jump")
		}
		if f.onTrue {
			prog[f.at].Jt = uint8(off)
		} else {
			prog[f.at].Jf = uint8(off)
		}
	}
	return prog
}

// installSeccomp sets no_new_privs and loads the filter on every thread of
// the calling process.
func installSeccomp() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	prog := seccompProgram()
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("load seccomp filter: %w", errno)
	}
	return nil
}
