// Command probe is the guest of the docker driver's escape tests: a Go
// worker speaking the runtime protocol through runtimes/go, built into a
// FROM-scratch image. It serves the conformance guest's operations (package
// guest: dial, readfile, writefile, balloon, spin, sleep, ...) and adds the
// probes a container must fail or answer from inside: resolve a name, fill
// the scratch directory, make a device node, dial a unix socket, stat and
// read paths, start processes until refused, report who it runs as. Every
// probe answers with what it saw, never a verdict: the tests judge.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/andromeda-runner/andromeda/contract"
	worker "github.com/andromeda-runner/andromeda/runtimes/go"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest/guest"
)

// op is the message that says what the probe does, with the arguments of
// its own probes; package guest decodes the conformance operations.
type op struct {
	Do    string   `json:"do"`
	Name  string   `json:"name"`
	Path  string   `json:"path"`
	Paths []string `json:"paths"`
	Size  int64    `json:"size"`
	MS    int      `json:"ms"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "sleep-child" {
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	worker.Serve(serve)
}

// serve runs the probe's own operations first, then package guest's.
func serve(ctx context.Context, in contract.Input) (contract.Output, error) {
	var o op
	if err := json.Unmarshal(in.Message, &o); err != nil {
		return guest.Noop("bad message: %v", err), nil
	}
	switch o.Do {
	case "nap":
		// Answers after ms milliseconds, or when the runner cancels.
		select {
		case <-time.After(time.Duration(o.MS) * time.Millisecond):
			return guest.Noop("nap: ok"), nil
		case <-ctx.Done():
			return contract.Output{}, ctx.Err()
		}
	case "resolve":
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(rctx, o.Name)
		if err != nil {
			return guest.Noop("resolve: error: %v", err), nil
		}
		return guest.Noop("resolve: ok: %s", strings.Join(addrs, " ")), nil
	case "dialunix":
		c, err := net.DialTimeout("unix", o.Path, time.Second)
		if err != nil {
			return guest.Noop("dialunix: error: %v", err), nil
		}
		c.Close()
		return guest.Noop("dialunix: ok"), nil
	case "forkbomb":
		return forkbomb(o.Size), nil
	case "interfaces":
		return guest.Publish("interfaces", interfaces()), nil
	case "fill":
		return fill(o.Path, o.Size), nil
	case "mknod":
		err := unix.Mknod(o.Path, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
		if err != nil {
			return guest.Noop("mknod: error: %v", err), nil
		}
		return guest.Noop("mknod: ok"), nil
	case "stat":
		res := map[string]string{}
		for _, p := range o.Paths {
			fi, err := os.Lstat(p)
			if err != nil {
				res[p] = "error: " + err.Error()
				continue
			}
			res[p] = "exists: " + fi.Mode().String()
		}
		return guest.Publish("stat", res), nil
	case "cat":
		b, err := os.ReadFile(o.Path)
		if err != nil {
			return guest.Noop("cat: error: %v", err), nil
		}
		if len(b) > 4096 {
			b = b[:4096]
		}
		return guest.Publish("cat", map[string]string{"data": string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))}), nil
	case "whoami":
		return guest.Publish("whoami", whoami()), nil
	}
	out, _ := guest.Do(in)
	return out, nil
}

// fill writes path in 1 MiB chunks until a write fails or size bytes are
// written, and reports how far it got: "fill: error after N bytes: ..." or
// "fill: ok: N bytes". It removes the file before answering, so that the
// scratch space is free for the next invocation of a warm worker.
func fill(path string, size int64) contract.Output {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return guest.Noop("fill: error after 0 bytes: %v", err)
	}
	defer os.Remove(path)
	defer f.Close()
	chunk := bytes.Repeat([]byte{'x'}, 1<<20)
	var n int64
	for n < size {
		w, err := f.Write(chunk[:min(int64(len(chunk)), size-n)])
		n += int64(w)
		if err != nil {
			return guest.Noop("fill: error after %d bytes: %v", n, err)
		}
	}
	if err := f.Sync(); err != nil {
		return guest.Noop("fill: error after %d bytes: %v", n, err)
	}
	return guest.Noop("fill: ok: %d bytes", n)
}

// forkbomb starts sleeping copies of the probe until the kernel refuses
// one or max are running, and reports how far it got: "forkbomb: error
// after N processes: ..." or "forkbomb: ok: N processes". The children
// live until the container ends.
func forkbomb(max int64) contract.Output {
	var n int64
	for n < max {
		cmd := exec.Command("/proc/self/exe", "sleep-child")
		if err := cmd.Start(); err != nil {
			return guest.Noop("forkbomb: error after %d processes: %v", n, err)
		}
		n++
	}
	return guest.Noop("forkbomb: ok: %d processes", n)
}

// whoami is who and where the probe runs: its ids, its pid and parent, the
// host name, the security lines of /proc/self/status and the first
// process's command line.
func whoami() map[string]any {
	host, _ := os.Hostname()
	status, _ := os.ReadFile("/proc/self/status")
	var sec []string
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "Cap") || strings.HasPrefix(line, "NoNewPrivs:") || strings.HasPrefix(line, "Seccomp:") {
			sec = append(sec, line)
		}
	}
	groups, _ := os.Getgroups()
	if groups == nil {
		groups = []int{}
	}
	init, err := os.ReadFile("/proc/1/cmdline")
	initCmd := strings.TrimRight(string(bytes.ReplaceAll(init, []byte{0}, []byte{' '})), " ")
	if err != nil {
		initCmd = "error: " + err.Error()
	}
	exe, _ := os.Readlink("/proc/self/exe")
	return map[string]any{
		"uid": os.Getuid(), "gid": os.Getgid(), "euid": os.Geteuid(), "groups": groups,
		"pid": os.Getpid(), "ppid": os.Getppid(), "host": host, "status": sec,
		"init": initCmd, "exe": exe, "procs": processes(),
	}
}

// processes lists the command names of the processes the probe can see.
func processes() []string {
	entries, _ := os.ReadDir("/proc")
	out := []string{}
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				out = append(out, e.Name()+": "+err.Error())
			}
			continue
		}
		out = append(out, e.Name()+": "+strings.TrimSpace(string(b)))
	}
	return out
}

// interfaces lists the network interfaces the probe sees, each with its
// addresses.
func interfaces() map[string][]string {
	res := map[string][]string{}
	ifs, err := net.Interfaces()
	if err != nil {
		res["error"] = []string{err.Error()}
		return res
	}
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		list := []string{}
		for _, a := range addrs {
			list = append(list, a.String())
		}
		res[i.Name] = list
	}
	return res
}
