//go:build linux && amd64

package process

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// foreignSyscalls makes getpid with the x32 ABI (the x86-64 number with
// bit 30 set) and with the i386 one (int 0x80, from machine code in an
// executable page).
const foreignSyscalls = `import ctypes, errno, mmap

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def x32():
    r = libc.syscall(ctypes.c_long(0x40000000 | 39))
    if r == -1:
        e = ctypes.get_errno()
        return 'x32 getpid: error %s' % errno.errorcode.get(e, e)
    return 'x32 getpid: ok'


def i386():
    code = b'\xb8\x14\x00\x00\x00\xcd\x80\xc3'  # mov eax, 20 (getpid); int 0x80; ret
    m = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(code)
    f = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))
    r = f()
    return 'i386 getpid: ok' if r > 0 else 'i386 getpid: error %d' % r


def handle(input):
    return {'noop': {'x32': x32, 'i386': i386}[input['message']]()}


if __name__ == '__main__':
    import sys
    print({'x32': x32, 'i386': i386}[sys.argv[1]]())
`

// TestForeignABIs makes real system calls with another ABI's convention
// in a worker, as the seccomp filter's documentation describes them: an
// x32 call fails with EPERM (as every refused call does; a kernel without
// x32 says ENOSYS, so EPERM is the filter's), and an i386 call (int 0x80,
// another audit architecture, whose numbers the filter cannot judge) kills
// the worker with SIGSYS. Each is first made on the host, outside the
// sandbox, to learn what the kernel itself does: where it cannot make an
// i386 call at all (no IA32 emulation: int 0x80 faults before seccomp
// sees it), that half is skipped.
func TestForeignABIs(t *testing.T) {
	requireSandbox(t)
	requireLang(t, LangPython)
	dir := filepath.Join(t.TempDir(), "svc")
	if err := writeService(dir, map[string]string{"main.py": foreignSyscalls}); err != nil {
		t.Fatal(err)
	}
	python := sharedDriver(t).toolchains(context.Background())[LangPython].Exe
	host := func(abi string) string {
		out, err := exec.Command(python, filepath.Join(dir, "main.py"), abi).CombinedOutput()
		if err != nil {
			return err.Error()
		}
		return strings.TrimSpace(string(out))
	}
	d := newDriver(t, testConfig())
	dep := deploy(t, d, sandbox.Spec{Service: "abi", Dir: dir, Entry: "main.py", Language: LangPython,
		Limits: sandbox.Limits{Concurrency: 1, Timeout: 10 * time.Second}})
	call := func(abi string) sandbox.Result {
		r, err := sandbox.CallRaw(context.Background(), dep, []byte(`{"run_id":"r","message":"`+abi+`"}`), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("x32", func(t *testing.T) {
		t.Logf("on the host: %s", host("x32"))
		r := call("x32")
		if r.Outcome != sandbox.Noop || r.Output.Noop != "x32 getpid: error EPERM" {
			t.Errorf("x32 getpid in the sandbox: %s %q (%.200s), want noop \"x32 getpid: error EPERM\"", r.Outcome, r.Output.Noop, r.Error)
		}
	})
	t.Run("i386", func(t *testing.T) {
		onHost := host("i386")
		if onHost != "i386 getpid: ok" {
			t.Skipf("this kernel cannot make i386 system calls (on the host: %s): seccomp never sees one", onHost)
		}
		r := call("i386")
		if r.Outcome != sandbox.Crashed || !strings.Contains(r.Error, "signal 31") {
			t.Errorf("i386 getpid in the sandbox: %s %q (%.300s), want crashed by signal 31 (SIGSYS)", r.Outcome, r.Output.Noop, r.Error)
		}
	})
}
