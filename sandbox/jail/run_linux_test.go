package jail

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestMain turns the test binary into a jail init when Start re-executes
// it, with one built-in.
func TestMain(m *testing.M) {
	MaybeInit(map[string]func() int{"exit7": func() int { return 7 }})
	os.Exit(m.Run())
}

// testHost probes this host for a test, skipping (failing in strict CI)
// where no complete jail can be built.
func testHost(t *testing.T) *Host {
	t.Helper()
	sandboxtest.Require(t, os.Geteuid() == 0, "jails need root here (namespaces, cgroups)")
	h := Probe(Config{Dir: t.TempDir(), UID: 65534, GID: 65534, CgroupParent: "/andromeda-test"})
	iso := h.Isolation()
	sandboxtest.Require(t, h.Err() == nil && iso.Memory && iso.Pids && iso.Seccomp, "no complete jail on this host: "+strings.Join(h.Notes(), "; "))
	return h
}

// TestRun runs commands to their end in jails: who and where they are,
// their output, a failing command, a built-in, and a cancelled run.
func TestRun(t *testing.T) {
	h := testHost(t)
	spec := func(script string) Spec {
		return Spec{
			Name: "run-test", Scratch: 1 << 20, Limits: Limits{Memory: 64 << 20, Pids: 16}, Files: 64,
			Dir: "/", Argv: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=" + Path},
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	out, err := h.Run(ctx, spec(`id -u; id -g; hostname; grep NoNewPrivs /proc/self/status; ulimit -n; (echo x > /usr/x) 2>/dev/null || echo read-only`))
	if err != nil {
		t.Fatalf("Run = %v\n%s", err, out)
	}
	for _, want := range []string{"1000\n1000\n" + Hostname + "\n", "NoNewPrivs:\t1\n64\n", "read-only\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Run output %q, want it to contain %q", out, want)
		}
	}
	if out, err := h.Run(ctx, spec("echo boom >&2; exit 3")); err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(string(out), "boom") {
		t.Errorf("Run(exit 3) = %q, %v; want an error with the exit status and the output", out, err)
	}
	s := spec("")
	s.Builtin = "exit7"
	if _, err := h.Run(ctx, s); err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("Run(builtin exit7) = %v, want exit status 7", err)
	}
	short, stop := context.WithTimeout(ctx, 500*time.Millisecond)
	defer stop()
	start := time.Now()
	if _, err := h.Run(short, spec("sleep 60")); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Errorf("Run(sleep 60) with a 500 ms deadline = %v after %v, want the deadline at once", err, time.Since(start))
	}
}

// TestStart starts a jail from a template and reads its cgroup.
func TestStart(t *testing.T) {
	h := testHost(t)
	tmpl, err := h.Prepare(Spec{Name: "start-test", Limits: Limits{Memory: 64 << 20, Pids: 16}, Dir: "/",
		Argv: []string{"/bin/sh", "-c", "read line; echo got $line"}, Env: []string{"PATH=" + Path}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := tmpl.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(time.Second)
	p.Stderr.Close()
	if _, err := p.Stdin.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	p.Stdin.Close()
	buf := make([]byte, 64)
	n, _ := p.Stdout.Read(buf)
	p.Stdout.Close()
	if got := string(buf[:n]); got != "got hello\n" {
		t.Errorf("the jail wrote %q, want %q", got, "got hello\n")
	}
	st, err := p.Wait()
	if err != nil || !st.Success() {
		t.Errorf("Wait() = %v, %v; want success", st, err)
	}
	if p.CPUTime() < 0 || p.PeakMemory() <= 0 || p.OOMKills() != 0 {
		t.Errorf("usage: cpu %v, peak memory %d, oom kills %d; want figures from the cgroup", p.CPUTime(), p.PeakMemory(), p.OOMKills())
	}
}
