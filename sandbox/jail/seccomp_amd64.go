//go:build linux

package jail

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_X86_64
	// x32Bit marks system calls made with the x32 ABI: they share the
	// x86-64 audit architecture, and their numbers would bypass the list,
	// so the filter fails every one of them with EPERM, the answer of
	// every refused call (no service needs the x32 ABI; a failed call lets
	// a program that probes for it go on, where SIGSYS would kill it).
	x32Bit = 0x40000000
)

// archDenied adds the x86-64 system calls that arm64 does not have.
var archDenied = []uint32{
	unix.SYS_IOPL, unix.SYS_IOPERM, unix.SYS_USELIB, unix.SYS_CREATE_MODULE,
	unix.SYS_GET_KERNEL_SYMS, unix.SYS_QUERY_MODULE, unix.SYS__SYSCTL,
	unix.SYS_USTAT, unix.SYS_SYSFS,
}
