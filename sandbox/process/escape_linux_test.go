package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/jail"
)

// run runs one operation of the exec guest through sandbox.Call, as the
// node does, and returns the judged result.
func run(t testing.TB, dep sandbox.Deployment, timeout time.Duration, op map[string]any) sandbox.Result {
	t.Helper()
	msg, err := json.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	in := contract.Input{RunID: "run-escape", Service: "escape", Trigger: contract.Trigger{Kind: "manual"}, Message: msg}
	r, err := sandbox.Call(context.Background(), dep, in, timeout)
	if err != nil {
		t.Fatalf("Call(%s) = %v", msg, err)
	}
	return r
}

// noopOf fails t unless r is a noop and returns its reason.
func noopOf(t testing.TB, r sandbox.Result) string {
	t.Helper()
	if r.Outcome != sandbox.Noop {
		t.Fatalf("outcome %s (%s, output %.300s), want noop", r.Outcome, r.Error, r.Raw)
	}
	return r.Output.Noop
}

// emitOf fails t unless r emits one message and decodes it into v.
func emitOf(t testing.TB, r sandbox.Result, v any) {
	t.Helper()
	if r.Outcome != sandbox.OK || len(r.Output.Emit) != 1 {
		t.Fatalf("outcome %s (%s, output %.300s), want one emit", r.Outcome, r.Error, r.Raw)
	}
	if err := json.Unmarshal(r.Output.Emit[0].Message, v); err != nil {
		t.Fatal(err)
	}
}

// escapeSpec is the exec guest as a service with small limits.
func escapeSpec(t testing.TB, mode sandbox.Mode) sandbox.Spec {
	dir, entry := guest(t, LangExec)
	return sandbox.Spec{
		Service: "escape", Dir: dir, Entry: entry, Language: LangExec, Mode: mode,
		Limits: sandbox.Limits{Memory: 64 << 20, Pids: 32, Concurrency: 1, Timeout: 10 * time.Second},
	}
}

// TestEscapes runs services that try to break out of the sandbox; each
// attempt must fail, and the failure must be visible on the run.
func TestEscapes(t *testing.T) {
	requireSandbox(t)
	// A fake node data dir with an operator token, and a token in the
	// node's environment.
	data := t.TempDir()
	token := filepath.Join(data, "operator.token")
	secret := fmt.Sprintf("token-canary-%d", time.Now().UnixNano())
	if err := os.WriteFile(token, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ANDROMEDA_TOKEN", secret)
	d := newDriver(t, testConfig())
	for _, mode := range []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand} {
		t.Run(string(mode), func(t *testing.T) {
			dep := deploy(t, d, escapeSpec(t, mode))

			t.Run("read-secrets", func(t *testing.T) {
				for _, p := range []string{"/etc/shadow", "/etc/passwd", token, data, fmt.Sprintf("/proc/%d/environ", os.Getpid()), "/root/.bash_history", testEnv.work} {
					got := noopOf(t, run(t, dep, 0, map[string]any{"do": "readfile", "path": p}))
					if !strings.HasPrefix(got, "readfile: error:") {
						t.Errorf("readfile %s: the guest reported %q, want an error", p, got)
					}
					t.Logf("readfile %s: %s", p, got)
				}
			})

			t.Run("write-outside-scratch", func(t *testing.T) {
				outside := filepath.Join(data, "planted")
				for _, p := range []string{"/service/planted", "/usr/planted", "/planted", "/etc/planted", "/proc/sys/kernel/hostname", outside} {
					got := noopOf(t, run(t, dep, 0, map[string]any{"do": "writefile", "path": p}))
					if !strings.HasPrefix(got, "writefile: error:") {
						t.Errorf("writefile %s: the guest reported %q, want an error", p, got)
					}
				}
				if _, err := os.Stat(outside); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("stat %s = %v: the guest wrote into the node's data dir", outside, err)
				}
				dir, _ := guest(t, LangExec)
				if _, err := os.Stat(filepath.Join(dir, "planted")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the guest wrote into its service dir on the host")
				}
				// The scratch dir is writable, and private.
				scratch := fmt.Sprintf("/tmp/andromeda-scratch-%d", time.Now().UnixNano())
				if got := noopOf(t, run(t, dep, 0, map[string]any{"do": "writefile", "path": scratch})); got != "writefile: ok" {
					t.Errorf("writefile %s: %q, want ok", scratch, got)
				}
				if _, err := os.Stat(scratch); err == nil {
					os.Remove(scratch)
					t.Errorf("the guest's %s appeared on the host", scratch)
				}
			})

			t.Run("dial-localhost", func(t *testing.T) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				accepted := make(chan net.Conn, 1)
				go func() {
					if c, err := ln.Accept(); err == nil {
						accepted <- c
					}
				}()
				got := noopOf(t, run(t, dep, 0, map[string]any{"do": "dial", "addr": ln.Addr().String()}))
				if !strings.HasPrefix(got, "dial: error:") {
					t.Errorf("dial %s: the guest reported %q, want an error", ln.Addr(), got)
				}
				select {
				case c := <-accepted:
					c.Close()
					t.Errorf("the listener at %s accepted a connection from the guest", ln.Addr())
				case <-time.After(200 * time.Millisecond):
				}
				t.Logf("dial %s: %s", ln.Addr(), got)
			})

			t.Run("env-tokens", func(t *testing.T) {
				var got struct{ Env, Args []string }
				emitOf(t, run(t, dep, 0, map[string]any{"do": "env"}), &got)
				for _, kv := range append(got.Env, got.Args...) {
					if strings.Contains(kv, secret) || strings.HasPrefix(kv, "ANDROMEDA_") {
						t.Errorf("the guest sees %q", kv)
					}
				}
				t.Logf("guest environment: %q", got.Env)
			})

			t.Run("kill-parent", func(t *testing.T) {
				got := noopOf(t, run(t, dep, 0, map[string]any{"do": "kill", "pids": []int{os.Getpid(), 1}}))
				t.Logf("kill: %s", got)
				if !strings.HasPrefix(got, "kill: ppid 0;") {
					t.Errorf("the guest sees a parent: %q, want ppid 0 (the node is outside its PID namespace)", got)
				}
				if want := fmt.Sprintf("kill %d: no such process", os.Getpid()); !strings.Contains(got, want) && strings.Contains(got, fmt.Sprintf("kill %d: <nil>", os.Getpid())) {
					t.Errorf("kill of the node's pid %d: %q, want it to fail", os.Getpid(), got)
				}
				// The node is alive (this test runs in it) and the service still works.
				if got := noopOf(t, run(t, dep, 0, map[string]any{"do": "noop", "reason": "alive"})); got != "alive" {
					t.Errorf("after the kill attempt: %q", got)
				}
			})

			t.Run("privileges", func(t *testing.T) {
				var who struct {
					UID, GID, PID, PPID int
					Host                string
					Status              []string
					Groups              []int
				}
				emitOf(t, run(t, dep, 0, map[string]any{"do": "whoami"}), &who)
				if who.UID != jail.UID || who.GID != jail.GID || who.PID != 1 || who.Host != jail.Hostname || len(who.Groups) != 0 {
					t.Errorf("whoami = %+v, want uid %d gid %d, no groups, pid 1, host %s", who, jail.UID, jail.GID, jail.Hostname)
				}
				status := strings.Join(who.Status, "\n")
				for _, want := range []string{"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
					if !strings.Contains(status, want) {
						t.Errorf("/proc/self/status lacks %q:\n%s", want, status)
					}
				}
				var calls map[string]string
				emitOf(t, run(t, dep, 0, map[string]any{"do": "syscalls"}), &calls)
				for name, res := range calls {
					if res == "ok" {
						t.Errorf("system call %s succeeded in the sandbox", name)
					}
				}
				t.Logf("refused system calls: %v", calls)
			})

			t.Run("fork-bomb", func(t *testing.T) {
				// A deployment of its own: the bomb's processes hold its
				// worker's pids until Stop.
				dep := deploy(t, d, escapeSpec(t, mode))
				got := noopOf(t, run(t, dep, 0, map[string]any{"do": "forkbomb"}))
				t.Logf("fork bomb: %s", got)
				if !strings.HasPrefix(got, "forkbomb: error after") || !strings.Contains(got, "resource temporarily unavailable") {
					t.Errorf("fork bomb reported %q, want it stopped by the pids limit", got)
				}
				// The node can still start processes.
				if out, err := exec.Command("true").CombinedOutput(); err != nil {
					t.Errorf("the node cannot start a process during the fork bomb: %v %s", err, out)
				}
			})

			t.Run("spin-past-timeout", func(t *testing.T) {
				dep := deploy(t, d, escapeSpec(t, mode))
				var pgid int
				if mode == sandbox.ModeServer {
					// A child in the worker's group, to be killed with it.
					_ = noopOf(t, run(t, dep, 0, map[string]any{"do": "spawn"}))
					pgid = dep.workerPids()[0]
				}
				pgids := make(chan int, 1)
				if mode == sandbox.ModeCommand {
					go func() { pgids <- dep.waitWorker(5 * time.Second) }()
				}
				start := time.Now()
				r := run(t, dep, 300*time.Millisecond, map[string]any{"do": "spin"})
				if r.Outcome != sandbox.Timeout {
					t.Fatalf("spin: outcome %s (%s), want timeout", r.Outcome, r.Error)
				}
				if took := time.Since(start); took > 300*time.Millisecond+200*time.Millisecond {
					t.Errorf("spin with a 300 ms timeout returned after %v", took)
				}
				if mode == sandbox.ModeCommand {
					pgid = <-pgids
				}
				if pgid <= 0 {
					t.Fatal("no worker pid seen")
				}
				deadline := time.Now().Add(3 * time.Second)
				for {
					left := processesInGroup(pgid)
					if len(left) == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("processes %v of the timed-out worker's group %d still run", left, pgid)
					}
					time.Sleep(20 * time.Millisecond)
				}
				t.Logf("process group %d gone %v after the call", pgid, time.Since(start))
			})

			t.Run("balloon", func(t *testing.T) {
				r := run(t, dep, 0, map[string]any{"do": "balloon"})
				if r.Outcome != sandbox.OOM {
					t.Fatalf("balloon: outcome %s (%s), want oom", r.Outcome, r.Error)
				}
				if !strings.Contains(r.Error, "memory") {
					t.Errorf("balloon: detail %q does not say why", r.Error)
				}
			})
		})
	}
}

// processesInGroup lists the host's processes in process group pgid.
func processesInGroup(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces; cut after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			out = append(out, pid)
		}
	}
	return out
}
