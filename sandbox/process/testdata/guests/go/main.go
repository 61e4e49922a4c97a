// Command guest is the exec implementation of the sandboxtest conformance
// guest (see the sandboxtest package documentation for the protocol): a Go
// worker speaking the runtime protocol through runtimes/go, serving the
// suite's operations with package guest. Beyond those it has the escape
// attempts of the process driver's tests: crash, forkbomb, kill, syscalls,
// whoami and spawn.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/andromeda-runner/andromeda/contract"
	worker "github.com/andromeda-runner/andromeda/runtimes/go"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest/guest"
)

// op is the message that says what the guest does, with the fields of the
// escape attempts; package guest decodes the suite's own operations.
type op struct {
	Do      string `json:"do"`
	Code    int    `json:"code"`
	Pids    []int  `json:"pids"`
	Level   string `json:"level"`
	Message string `json:"message"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "forkbomb-child" {
		forkbombChild()
	}
	if len(os.Args) > 1 && os.Args[1] == "sleep-child" {
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	worker.Serve(serve)
}

// serve runs the operations that need the runtime (wait, log), then the
// others.
func serve(ctx context.Context, in contract.Input) (contract.Output, error) {
	var o op
	_ = json.Unmarshal(in.Message, &o)
	switch o.Do {
	case "wait":
		<-ctx.Done()
		return contract.Output{}, ctx.Err()
	case "log":
		worker.Log(ctx, o.Level, o.Message)
		return guest.Noop("logged"), nil
	}
	return handle(in), nil
}

func handle(in contract.Input) contract.Output {
	out, ok := guest.Do(in)
	if ok {
		return out
	}
	var o op
	if err := json.Unmarshal(in.Message, &o); err != nil {
		return guest.Noop("bad message: %v", err)
	}
	switch o.Do {
	// The escape attempts of the process driver's tests.
	case "crash":
		fmt.Fprintf(os.Stderr, "crash: about to exit with status %d\n", o.Code)
		os.Exit(o.Code)
	case "forkbomb":
		return forkbomb()
	case "kill":
		// Kill the parent and the pids given: the node's, seen from inside.
		var res []string
		targets := append([]int{os.Getppid()}, o.Pids...)
		for _, pid := range targets {
			if pid <= 0 {
				res = append(res, fmt.Sprintf("kill %d: refused to signal a group", pid))
				continue
			}
			res = append(res, fmt.Sprintf("kill %d: %v", pid, syscall.Kill(pid, syscall.SIGKILL)))
		}
		return guest.Noop("kill: ppid %d; %s", os.Getppid(), strings.Join(res, "; "))
	case "syscalls":
		return guest.Publish("syscalls", trySyscalls())
	case "whoami":
		host, _ := os.Hostname()
		status, _ := os.ReadFile("/proc/self/status")
		var caps []string
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "Cap") || strings.HasPrefix(line, "NoNewPrivs") || strings.HasPrefix(line, "Seccomp:") {
				caps = append(caps, line)
			}
		}
		return guest.Publish("whoami", map[string]any{
			"uid": os.Getuid(), "gid": os.Getgid(), "euid": os.Geteuid(), "groups": groups(),
			"pid": os.Getpid(), "ppid": os.Getppid(), "host": host, "status": caps, "cwd": cwd(),
		})
	case "spawn":
		// A child that sleeps: the driver must kill it with the worker.
		cmd := exec.Command("/proc/self/exe", "sleep-child")
		if err := cmd.Start(); err != nil {
			return guest.Noop("spawn: error: %v", err)
		}
		return guest.Noop("spawn: ok: %d", cmd.Process.Pid)
	}
	return out // guest.Do's "unknown op"
}

// forkbomb starts copies of itself, each of which starts more, until the
// kernel refuses, and reports how far it got.
func forkbomb() contract.Output {
	n := 0
	for {
		cmd := exec.Command("/proc/self/exe", "forkbomb-child")
		if err := cmd.Start(); err != nil {
			return guest.Noop("forkbomb: error after %d processes: %v", n, err)
		}
		n++
		if n > 100000 {
			return guest.Noop("forkbomb: ok: %d processes", n)
		}
	}
}

func forkbombChild() {
	for {
		if err := exec.Command("/proc/self/exe", "forkbomb-child").Start(); err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// trySyscalls makes the calls the seccomp filter refuses and reports each
// result.
func trySyscalls() map[string]string {
	res := map[string]string{}
	errStr := func(err error) string {
		if err == nil {
			return "ok"
		}
		return err.Error()
	}
	res["mount"] = errStr(syscall.Mount("tmpfs", "/tmp", "tmpfs", 0, ""))
	res["unshare"] = errStr(syscall.Unshare(syscall.CLONE_NEWUSER))
	res["ptrace"] = errStr(syscall.PtraceAttach(1))
	_, _, e := syscall.RawSyscall(unix.SYS_BPF, 0, 0, 0)
	res["bpf"] = errStr(errno(e))
	_, _, e = syscall.RawSyscall(unix.SYS_KEYCTL, 0, 0, 0)
	res["keyctl"] = errStr(errno(e))
	res["reboot"] = errStr(syscall.Reboot(syscall.LINUX_REBOOT_CMD_CAD_OFF))
	res["chroot"] = errStr(syscall.Chroot("/tmp"))
	res["sethostname"] = errStr(syscall.Sethostname([]byte("escaped")))
	_, _, e = syscall.RawSyscall(unix.SYS_SETNS, 0, 0, 0)
	res["setns"] = errStr(errno(e))
	_, _, e = syscall.RawSyscall(syscall.SYS_CLONE, syscall.CLONE_NEWNS|uintptr(syscall.SIGCHLD), 0, 0)
	res["clone-newns"] = errStr(errno(e))
	return res
}

func errno(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func groups() []int {
	g, _ := os.Getgroups()
	if g == nil {
		return []int{}
	}
	return g
}

func cwd() string {
	d, _ := os.Getwd()
	return d
}
