package process

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// crashLoopScript is an exec service that answers init and dies 50 ms
// later, every time: a crash loop that passes Deploy's self-check.
const crashLoopScript = `#!/bin/sh
read -r line
echo '{"type":"ready","id":"init","protocol":1,"concurrency":1}'
sleep 0.05
echo "crash loop: dying on purpose" >&2
exit 3
`

// TestBackoff checks the restart delays: doubling, capped, jittered.
func TestBackoff(t *testing.T) {
	for _, c := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{1, 50 * time.Millisecond, 150 * time.Millisecond},
		{2, 100 * time.Millisecond, 300 * time.Millisecond},
		{4, 400 * time.Millisecond, 1200 * time.Millisecond},
		{30, 500 * time.Millisecond, 1500 * time.Millisecond},
	} {
		for range 50 {
			if got := backoff(100*time.Millisecond, time.Second, c.n); got < c.lo || got >= c.hi {
				t.Fatalf("backoff(100ms, 1s, %d) = %v, want in [%v, %v)", c.n, got, c.lo, c.hi)
			}
		}
	}
}

// TestCrashInFlight checks that every invocation in flight on a worker
// that dies ends crashed with the exit status and the tail of its standard
// error, and that the pool restarts the worker.
func TestCrashInFlight(t *testing.T) {
	requireSandbox(t)
	d := newDriver(t, testConfig())
	spec := escapeSpec(t, sandbox.ModeServer)
	spec.Limits.Concurrency = 2
	dep := deploy(t, d, spec)

	type res struct {
		name string
		r    sandbox.Result
	}
	results := make(chan res, 4)
	start := func(name string, timeout time.Duration, op map[string]any) {
		go func() { results <- res{name, run(t, dep, timeout, op)} }()
	}
	waitInFlight := func(n int) {
		deadline := time.Now().Add(5 * time.Second)
		for dep.inFlight() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d invocations in flight, want %d", dep.inFlight(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Two workers: sleeps A and C land on worker 0, B on worker 1, and the
	// crash joins B on worker 1 (the least busy worker, ties to the first).
	start("A", time.Second, map[string]any{"do": "sleep"})
	waitInFlight(1)
	start("B", 5*time.Second, map[string]any{"do": "sleep"})
	waitInFlight(2)
	start("C", time.Second, map[string]any{"do": "sleep"})
	waitInFlight(3)
	start("crash", 5*time.Second, map[string]any{"do": "crash", "code": 7})
	got := map[string]sandbox.Result{}
	for range 4 {
		r := <-results
		got[r.name] = r.r
	}
	for _, name := range []string{"B", "crash"} {
		r := got[name]
		if r.Outcome != sandbox.Crashed || !strings.Contains(r.Error, "status 7") || !strings.Contains(r.Error, "crash: about to exit with status 7") {
			t.Errorf("%s: outcome %s, detail %q; want crashed with the exit status and the stderr tail", name, r.Outcome, r.Error)
		}
	}
	for _, name := range []string{"A", "C"} {
		if r := got[name]; r.Outcome != sandbox.Timeout {
			t.Errorf("%s on the other worker: outcome %s (%s), want timeout", name, r.Outcome, r.Error)
		}
	}
	t.Logf("crashed invocation's detail: %q", got["B"].Error)
	// The pool restarts the worker: both slots serve again.
	for i := range 4 {
		if r := noopOf(t, run(t, dep, 5*time.Second, map[string]any{"do": "noop", "reason": "back " + strconv.Itoa(i)})); r != "back "+strconv.Itoa(i) {
			t.Errorf("after the crash: %q", r)
		}
	}
	if ok, why := dep.Health(); !ok {
		t.Errorf("Health() = false, %q after one crash", why)
	}
}

// inFlight counts the invocations in flight on the deployment's workers.
func (d *deployment) inFlight() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for w := range d.live {
		w.mu.Lock()
		n += w.inflight
		w.mu.Unlock()
	}
	return n
}

// TestCrashLoop checks that a service whose workers keep dying is restarted
// with growing delays, reported unhealthy with the reason, failed fast while
// no worker runs, and that it does not disturb another service: the healthy
// service's latency during the crash loop is measured and bounded.
func TestCrashLoop(t *testing.T) {
	requireSandbox(t)
	cfg := testConfig()
	cfg.Backoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	d := newDriver(t, cfg)
	healthy := deploy(t, d, escapeSpec(t, sandbox.ModeServer))

	dir := filepath.Join(t.TempDir(), "crashloop")
	if err := writeService(dir, map[string]string{"run": crashLoopScript}); err != nil {
		t.Fatal(err)
	}
	var lmu sync.Mutex
	var logs []string
	measure := func(d time.Duration) (p50, p99 time.Duration, n int) {
		var lat []time.Duration
		for end := time.Now().Add(d); time.Now().Before(end); {
			start := time.Now()
			if got := noopOf(t, run(t, healthy, 0, map[string]any{"do": "noop", "reason": "ok"})); got != "ok" {
				t.Fatalf("healthy service: %q", got)
			}
			lat = append(lat, time.Since(start))
			time.Sleep(time.Millisecond)
		}
		slices.Sort(lat)
		return lat[len(lat)/2], lat[len(lat)*99/100], len(lat)
	}
	base50, base99, baseN := measure(500 * time.Millisecond)

	loop := deploy(t, d, sandbox.Spec{Service: "crashloop", Dir: dir, Entry: "run", Language: LangExec,
		Limits: sandbox.Limits{Concurrency: 2}, Log: func(l string) { lmu.Lock(); logs = append(logs, l); lmu.Unlock() }})
	loop50, loop99, loopN := measure(1500 * time.Millisecond)
	spawned := loop.spawned.Load()
	t.Logf("healthy service: baseline p50 %v p99 %v (%d calls); during the crash loop p50 %v p99 %v (%d calls); the crash loop started %d workers in 1.5 s",
		base50, base99, baseN, loop50, loop99, loopN, spawned)
	if limit := max(10*base99, 20*time.Millisecond); loop99 > limit {
		t.Errorf("healthy service p99 %v during the crash loop, over %v (10x its baseline p99 %v)", loop99, limit, base99)
	}
	// Without backoff two slots dying every 50 ms would start 60 workers in
	// 1.5 s; with a delay doubling from 20 ms to 200 ms, far fewer.
	if spawned > 30 {
		t.Errorf("the crash loop started %d workers in 1.5 s: restarts are not backing off", spawned)
	}

	ok, why := loop.Health()
	if ok || !strings.Contains(why, "crash loop") || !strings.Contains(why, "status 3") {
		t.Errorf("Health() = %v, %q; want unhealthy, naming the crash loop and the exit status", ok, why)
	}
	// Invocations fail fast, or crash with the worker, but never hang.
	start := time.Now()
	exit, err := loop.Invoke(context.Background(), []byte(`{"run_id":"r","message":{}}`))
	if err != nil || exit.Outcome != sandbox.Crashed || time.Since(start) > time.Second {
		t.Errorf("Invoke on the crash-looping service = %s %q, %v after %v; want crashed at once", exit.Outcome, exit.Detail, err, time.Since(start))
	}
	lmu.Lock()
	if !slices.Contains(logs, "crash loop: dying on purpose") {
		t.Errorf("the workers' standard error did not reach Spec.Log: %q", logs)
	}
	lmu.Unlock()
}

// TestHealthRecovers checks that a service that crashed its worker on
// consecutive invocations is unhealthy, then healthy again once an
// invocation succeeds.
func TestHealthRecovers(t *testing.T) {
	requireSandbox(t)
	cfg := testConfig()
	cfg.Backoff = 10 * time.Millisecond
	d := newDriver(t, cfg)
	dep := deploy(t, d, escapeSpec(t, sandbox.ModeServer))
	for i := range 3 {
		if r := run(t, dep, 5*time.Second, map[string]any{"do": "exit", "code": 1}); r.Outcome != sandbox.Crashed {
			t.Fatalf("exit %d: outcome %s (%s)", i, r.Outcome, r.Error)
		}
	}
	if ok, why := dep.Health(); ok {
		t.Fatal("Health() = true after 3 consecutive crashes")
	} else {
		t.Logf("unhealthy: %s", why)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := run(t, dep, 5*time.Second, map[string]any{"do": "noop", "reason": "fine"})
		if r.Outcome == sandbox.Noop {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service never served again: %s %s", r.Outcome, r.Error)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ok, why := dep.Health(); !ok {
		t.Errorf("Health() = false, %q after a success", why)
	}
}

// helperNodeEnv makes the test binary a node that deploys the exec guest,
// prints its workers' pids and waits to be killed (TestNoOrphans).
const helperNodeEnv = "ANDROMEDA_PROCESS_TEST_NODE"

// helperNode is that node; it never returns.
func helperNode() {
	d := New(testConfig())
	dir, entry := filepath.Join(os.Getenv(helperNodeEnv), "guest-exec"), "guest"
	ctx := context.Background()
	dep, err := d.Deploy(ctx, sandbox.Spec{Service: "orphan", Dir: dir, Entry: entry, Language: LangExec, Limits: sandbox.Limits{Concurrency: 2}})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	dp := dep.(*deployment)
	for range 2 {
		// Children of the workers, which must die with them.
		exit, err := dp.Invoke(ctx, []byte(`{"run_id":"r","message":{"do":"spawn"}}`))
		if err != nil || exit.Outcome != sandbox.OK {
			fmt.Println("error: spawn:", exit.Outcome, exit.Detail, err)
			os.Exit(1)
		}
	}
	for _, pid := range dp.workerPids() {
		fmt.Println(pid)
	}
	fmt.Println("ready")
	select {}
}

// TestNoOrphans kills a node with SIGKILL and checks that its workers and
// their children die with it (the parent-death signal).
func TestNoOrphans(t *testing.T) {
	requireSandbox(t)
	guest(t, LangExec)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperNodeEnv+"="+testEnv.dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if line == "ready" {
			break
		}
		pid, err := strconv.Atoi(line)
		if err != nil {
			t.Fatalf("helper node: %s", line)
		}
		pids = append(pids, pid)
	}
	if len(pids) != 2 {
		t.Fatalf("helper node reported workers %v, want 2", pids)
	}
	var groups []int
	for _, pid := range pids {
		groups = append(groups, processesInGroup(pid)...)
	}
	if len(groups) < 4 {
		t.Fatalf("workers and children before the kill: %v, want at least 4 processes", groups)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(3 * time.Second)
	for {
		var left []int
		for _, pid := range pids {
			left = append(left, processesInGroup(pid)...)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes %v outlived their node", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d worker processes died with their node", len(groups))

	// The dead node's worker cgroups are removed by the next driver.
	_ = New(testConfig()).host()
	prefix := fmt.Sprintf("w-%d-", cmd.Process.Pid) // a jail's cgroup is w-<node pid>-<seq>-<name>
	for _, parent := range sharedDriver(t).host().jail.CgroupParents() {
		entries, _ := os.ReadDir(parent)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				t.Errorf("stale worker cgroup %s left under %s", e.Name(), parent)
			}
		}
	}
}
