// Command guest is the exec implementation of the sandboxtest conformance
// guest (see the sandboxtest package documentation for the protocol): a Go
// worker speaking the runtime protocol through runtimes/go. Beyond the
// suite's operations it has the escape attempts of the process driver's
// tests: crash, forkbomb, kill, syscalls, whoami and spawn.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/andromeda-runner/andromeda/contract"
	worker "github.com/andromeda-runner/andromeda/runtimes/go"
)

// op is the message that says what the guest does.
type op struct {
	Do     string          `json:"do"`
	Data   json.RawMessage `json:"data"`
	Reason string          `json:"reason"`
	Code   int             `json:"code"`
	Path   string          `json:"path"`
	Addr   string          `json:"addr"`
	Pids   []int           `json:"pids"`
}

// hoard keeps ballooned memory reachable so the collector cannot free it.
var hoard [][]byte

func main() {
	if len(os.Args) > 1 && os.Args[1] == "forkbomb-child" {
		forkbombChild()
	}
	if len(os.Args) > 1 && os.Args[1] == "sleep-child" {
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	worker.Serve(worker.Func(handle))
}

func noop(format string, args ...any) contract.Output {
	return contract.Output{Noop: fmt.Sprintf(format, args...)}
}

func publish(topic string, v any) contract.Output {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return contract.Output{Emit: []contract.Emit{{Topic: topic, Message: b}}}
}

func handle(in contract.Input) contract.Output {
	var o op
	if err := json.Unmarshal(in.Message, &o); err != nil {
		return noop("bad message: %v", err)
	}
	switch o.Do {
	case "echo":
		data := o.Data
		if data == nil {
			data = json.RawMessage("null")
		}
		return contract.Output{Emit: []contract.Emit{{Topic: "echo", Message: data}}}
	case "input":
		return publish("input", in)
	case "noop":
		return contract.Output{Noop: o.Reason}
	case "nothing":
		return contract.Output{}
	case "panic":
		panic("conformance panic")
	case "exit":
		os.Exit(o.Code)
	case "crash":
		fmt.Fprintf(os.Stderr, "crash: about to exit with status %d\n", o.Code)
		os.Exit(o.Code)
	case "spin":
		for {
		}
	case "sleep":
		for {
			time.Sleep(time.Hour)
		}
	case "balloon":
		for {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			hoard = append(hoard, b)
		}
	case "readfile":
		b, err := os.ReadFile(o.Path)
		if err != nil {
			return noop("readfile: error: %v", err)
		}
		return noop("readfile: ok: %d bytes", len(b))
	case "writefile":
		if err := os.WriteFile(o.Path, []byte("x"), 0o644); err != nil {
			return noop("writefile: error: %v", err)
		}
		return noop("writefile: ok")
	case "dial":
		c, err := net.DialTimeout("tcp", o.Addr, time.Second)
		if err != nil {
			return noop("dial: error: %v", err)
		}
		_, _ = c.Write([]byte("hello"))
		_ = c.Close()
		return noop("dial: ok")
	case "env":
		return publish("env", map[string][]string{"env": nonNil(os.Environ()), "args": nonNil(os.Args)})

	// The escape attempts of the process driver's tests.
	case "forkbomb":
		return forkbomb()
	case "kill":
		// Kill the parent and the pids given: the node's, seen from inside.
		var out []string
		targets := append([]int{os.Getppid()}, o.Pids...)
		for _, pid := range targets {
			if pid <= 0 {
				out = append(out, fmt.Sprintf("kill %d: refused to signal a group", pid))
				continue
			}
			out = append(out, fmt.Sprintf("kill %d: %v", pid, syscall.Kill(pid, syscall.SIGKILL)))
		}
		return noop("kill: ppid %d; %s", os.Getppid(), strings.Join(out, "; "))
	case "syscalls":
		return publish("syscalls", trySyscalls())
	case "whoami":
		host, _ := os.Hostname()
		status, _ := os.ReadFile("/proc/self/status")
		var caps []string
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "Cap") || strings.HasPrefix(line, "NoNewPrivs") || strings.HasPrefix(line, "Seccomp:") {
				caps = append(caps, line)
			}
		}
		return publish("whoami", map[string]any{
			"uid": os.Getuid(), "gid": os.Getgid(), "euid": os.Geteuid(), "groups": groups(),
			"pid": os.Getpid(), "ppid": os.Getppid(), "host": host, "status": caps, "cwd": cwd(),
		})
	case "spawn":
		// A child that sleeps: the driver must kill it with the worker.
		cmd := exec.Command("/proc/self/exe", "sleep-child")
		if err := cmd.Start(); err != nil {
			return noop("spawn: error: %v", err)
		}
		return noop("spawn: ok: %d", cmd.Process.Pid)
	}
	return noop("unknown op %s", o.Do)
}

// forkbomb starts copies of itself, each of which starts more, until the
// kernel refuses, and reports how far it got.
func forkbomb() contract.Output {
	n := 0
	for {
		cmd := exec.Command("/proc/self/exe", "forkbomb-child")
		if err := cmd.Start(); err != nil {
			return noop("forkbomb: error after %d processes: %v", n, err)
		}
		n++
		if n > 100000 {
			return noop("forkbomb: ok: %d processes", n)
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

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
