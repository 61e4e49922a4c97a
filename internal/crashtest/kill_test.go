//go:build linux

package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/internal/testutil"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
	"github.com/andromeda-runner/andromeda/store"
)

// andromedaCmd is the package of the binary the tests build and kill.
const andromedaCmd = "../../cmd/andromeda"

// killService is one service of TestKillDuringLoad: every run adds one to
// the state counter key and says so in its output.
type killService struct {
	name, key string
}

var killServices = []killService{{"kill-node", "n"}, {"kill-wasm", "beats"}}

// killRunsPerService keeps every run of the test: the final check reads
// them all. The test's own store handles must open the store with the
// node's exact bounds, or they would change the runs stream.
const killRunsPerService = 1_000_000

// TestKillDuringLoad is the reliability criterion "under 200 SIGKILLs during
// mixed load (fires, cron, state writes), every acknowledged run is found,
// no state revision lacks its run, and the node is ready again each time".
// It runs `andromeda serve` as a subprocess with a Node.js service on the
// process driver and a wasm service, both counting in state on a 1 s cron
// and under continuous manual fires, and SIGKILLs the node's process group
// at a random moment, 6 times (200 with ANDROMEDA_SOAK=1, 3 with -short).
// After each restart it looks up every run a fire was answered 200 (or 429,
// a recorded skip) for, and every run the state names as a writer; at the
// end it stops the node and checks offline that each service's counter
// equals its runs that committed an increment, one run per value.
func TestKillDuringLoad(t *testing.T) {
	sandboxtest.Require(t, os.Geteuid() == 0, "the process driver needs root")
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build andromeda and the wasm service")
	_, err = exec.LookPath("node")
	sandboxtest.Require(t, err == nil, "node is needed for the process service")
	kills := 6
	if os.Getenv("ANDROMEDA_SOAK") == "1" {
		kills = 200
	} else if testing.Short() {
		kills = 3
	}
	ctx := context.Background()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "andromeda")
	build := exec.Command("go", "build", "-o", bin, andromedaCmd)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	wasmDir := filepath.Join(tmp, "kill-wasm")
	testutil.CopyDir(t, filepath.Join("testdata", "kill", "wasm"), wasmDir)
	if err := gobuild.Wasm(ctx, filepath.Join("..", "..", "examples", "heartbeat"), filepath.Join(wasmDir, "main.wasm"), gobuild.Command); err != nil {
		t.Fatalf("build the wasm service: %v", err)
	}

	data := filepath.Join(tmp, "data")
	n := &killNode{t: t, bin: bin, logPath: filepath.Join(tmp, "node.log"), config: filepath.Join(tmp, "andromeda.yaml")}
	n.addr, n.natsAddr = testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg := fmt.Sprintf("listen: %s\ndata: %s\nnats: {listen: %s}\nruns: {per_service: %d}\nlog: {format: json, level: info}\n",
		n.addr, data, n.natsAddr, killRunsPerService)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.cleanup)
	if _, err := n.start(); err != nil {
		t.Fatalf("first start: %v", err)
	}
	token, err := node.OperatorToken(data)
	if err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(n.addr, token)
	info, err := c.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range info.Drivers {
		if d.Name == "process" {
			sandboxtest.Require(t, d.Enabled, "the process driver is disabled on this host: "+d.Reason)
		}
	}
	for _, dir := range []string{filepath.Join("testdata", "kill", "node"), wasmDir} {
		b, err := archive.Pack(dir)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Submit(ctx, b)
		if err == nil && res.Service.Status != "deployed" {
			err = fmt.Errorf("status %s: %s", res.Service.Status, res.Service.StatusDetail)
		}
		if err != nil {
			t.Fatalf("submit %s: %v", dir, err)
		}
	}

	acked := map[string]killAck{}                    // by run id, over every iteration
	reconciledRuns := map[string]bool{}              // run id → its state had committed
	found := map[string]bool{}                       // run ids looked up and found while the node ran
	var readies, selfTests, restores []time.Duration // time to ready, to the process driver's self-test passed, then to services restored
	refusals := map[string]int{}
	var fires, acks, skips, refused, reconciled, interrupted, writersChecked, acksFound int
	for i := 1; i <= kills; i++ {
		// Load: continuous fires on both services while cron ticks, then
		// SIGKILL at a random moment.
		c := api.NewClient(n.addr, token) // fresh connections for the new process
		ld := startKillLoad(c)
		time.Sleep(time.Duration(200+rand.IntN(1301)) * time.Millisecond)
		pid := n.cmd.Process.Pid
		if i == 1 {
			// The orphan check below must see workers when there are some.
			if w := workers(pid); len(w) == 0 {
				t.Errorf("a node with a warm process service has no processes in its worker cgroups: the orphan check would see nothing")
			} else {
				t.Logf("worker processes before the first kill: %d", len(w))
			}
		}
		n.kill()
		got := ld.wait()
		fires += got.fires
		for k, v := range got.refused {
			refused += v
			refusals[k] += v
		}
		for _, a := range got.acks {
			a.iter = i
			acked[a.id] = a
			if a.skipped {
				skips++
			} else {
				acks++
			}
		}
		if left := orphans(pid, 5*time.Second); len(left) > 0 {
			t.Errorf("kill %d: workers of the killed node (pid %d) still alive after 5 s: %v", i, pid, left)
		}

		// Restart at once: the kernel dropped the data dir's flock.
		logFrom := n.logSize()
		took, err := n.start()
		if err != nil {
			t.Fatalf("kill %d: node not ready again: %v", i, err)
		}
		readies = append(readies, took)
		if cgs := staleCgroups(pid); len(cgs) > 0 {
			t.Errorf("kill %d: the restarted node left the killed node's worker cgroups: %v", i, cgs)
		}
		rl := n.restartSince(logFrom)
		if !rl.driverReady.IsZero() && !rl.restored.IsZero() {
			selfTests = append(selfTests, rl.driverReady.Sub(n.started))
			restores = append(restores, rl.restored.Sub(rl.driverReady))
		}
		reconciled += len(rl.reconciled)
		for id, committed := range rl.reconciled {
			reconciledRuns[id] = committed
			if !committed {
				interrupted++
			}
			if a, ok := acked[id]; ok && !committed && !a.skipped {
				t.Errorf("kill %d: run %s of %s was answered 200 (%s) but reconciled at restart as interrupted", i, id, a.service, a.outcome)
			}
		}

		// Every acknowledged run of this iteration is found with the
		// outcome it was answered with.
		for _, a := range got.acks {
			r, err := c.Run(ctx, a.service, a.id)
			if err != nil {
				t.Errorf("kill %d: run %s of %s was answered %s (%s) but is not found after the restart: %v", i, a.id, a.service, a.status(), a.outcome, err)
				continue
			}
			if r.Outcome != a.outcome {
				t.Errorf("kill %d: run %s of %s was answered %s but is recorded %s (%s)", i, a.id, a.service, a.outcome, r.Outcome, r.Error)
			}
			found[a.id] = true
			acksFound++
		}
		// Every writer the state names has its run.
		writersChecked += n.checkWriters(ctx, c, i, found)
		for _, s := range killServices {
			svc, err := c.Service(ctx, s.name)
			if err != nil || svc.Status != "deployed" {
				t.Errorf("kill %d: service %s after the restart: status %q (%s), %v", i, s.name, svc.Status, svc.StatusDetail, err)
			}
		}
		if t.Failed() {
			t.Fatalf("kill %d: stopping at the first kill that failed a check", i)
		}
	}

	// The final check reads the store offline: a graceful stop first.
	if err := n.stop(30 * time.Second); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	st, done := openStoreOffline(t, data)
	defer done()
	var runsTotal int
	for _, s := range killServices {
		runs, dups := allRuns(t, st, s.name)
		runsTotal += len(runs)
		for _, id := range dups {
			t.Errorf("%s: run %s is recorded more than once", s.name, id)
		}
		snap, err := st.State(ctx, s.name)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range snap.Writers {
			if _, ok := runs[w]; !ok {
				t.Errorf("%s: state revision %d names writer %s, which has no run record", s.name, snap.Revision, w)
			}
		}
		var final int
		if raw, ok := snap.Values[s.key]; ok {
			if err := json.Unmarshal(raw, &final); err != nil {
				t.Fatalf("%s: state %s = %s: %v", s.name, s.key, raw, err)
			}
		}
		// Each committed increment is one run, and the values they wrote
		// are exactly 1..final.
		byValue := map[int][]string{}
		for id, r := range runs {
			if v, ok := countedValue(r, s.key); ok {
				byValue[v] = append(byValue[v], id)
			}
		}
		var missing []int
		for v := 1; v <= final; v++ {
			switch ids := byValue[v]; {
			case len(ids) == 0:
				missing = append(missing, v)
			case len(ids) > 1:
				t.Errorf("%s: %d runs claim the increment to %d: %v", s.name, len(ids), v, ids)
			}
			delete(byValue, v)
		}
		if len(missing) > 0 {
			t.Errorf("%s: counter %s = %d but no run records the increment to %d values: %v", s.name, s.key, final, len(missing), firstInts(missing, 20))
		}
		for v, ids := range byValue {
			t.Errorf("%s: runs %v claim the increment to %d, beyond the counter %d", s.name, ids, v, final)
		}
		// A run reconciled as committed is one of the increments; one
		// reconciled as interrupted is an error that says so.
		outcomes := map[string]int{}
		for id, r := range runs {
			outcome := r.Outcome
			committed, rec := reconciledRuns[id]
			_, counted := countedValue(r, s.key)
			switch {
			case rec && committed && !counted:
				t.Errorf("%s: run %s was reconciled as committed but is recorded %s without an increment (%s)", s.name, id, r.Outcome, r.Error)
			case rec && !committed && (r.Outcome != "error" || !strings.HasPrefix(r.Error, "interrupted")):
				t.Errorf("%s: run %s was reconciled as interrupted but is recorded %s (%s)", s.name, id, r.Outcome, r.Error)
			case rec && !committed:
				outcome = "interrupted"
			case counted:
				outcome = "counted"
			}
			outcomes[outcome]++
		}
		for id, a := range acked {
			if a.service != s.name {
				continue
			}
			if _, ok := runs[id]; !ok {
				t.Errorf("%s: run %s answered %s at kill %d is gone at the end", s.name, id, a.status(), a.iter)
			}
		}
		t.Logf("%s: counter %d; %d run records %v; %d writers named by state revision %d", s.name, final, len(runs), outcomes, len(snap.Writers), snap.Revision)
	}

	t.Logf("kills %d; fires %d: %d answered 200, %d answered 429 (recorded skips), %d not acknowledged %v", kills, fires, acks, skips, refused, refusals)
	t.Logf("acknowledged runs found after the restart: %d of %d; state writers looked up: %d; runs reconciled at restart: %d (%d interrupted); run records at the end: %d",
		acksFound, len(acked), writersChecked, reconciled, interrupted, runsTotal)
	t.Logf("time to ready after a kill: %s; of which until the process driver's self-test passed: %s; then until the services were restored: %s",
		percentiles(readies), percentiles(selfTests), percentiles(restores))
}

// killNode is `andromeda serve` as a subprocess in its own process group,
// its stdout and stderr appended to one log file across restarts.
type killNode struct {
	t                    *testing.T
	bin, config, logPath string
	args                 []string // serve's flags after --config
	addr, natsAddr       string
	cmd                  *exec.Cmd
	started              time.Time // when the current process was started
	exited               chan error
}

// start starts the node and waits until /readyz answers 200, at most 60 s (a loaded 2-core machine has taken 35 s);
// it returns the time that took.
func (n *killNode) start() (time.Duration, error) {
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "---- test: starting the node at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(n.bin, append([]string{"serve", "--config", n.config}, n.args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	begin := time.Now()
	n.started = begin
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n.cmd, n.exited = cmd, make(chan error, 1)
	go func(exited chan<- error) { exited <- cmd.Wait() }(n.exited)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- api.NewClient(n.addr, "").WaitReady(ctx) }()
	select {
	case err := <-ready:
		if err != nil {
			return 0, fmt.Errorf("not ready within 60 s: %w", err)
		}
		return time.Since(begin), nil
	case err := <-n.exited:
		n.cmd = nil
		return 0, fmt.Errorf("the node exited before it was ready: %v", err)
	}
}

// kill SIGKILLs the node's whole process group and reaps the node.
func (n *killNode) kill() {
	if n.cmd == nil {
		return
	}
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.exited
	n.cmd = nil
}

// stop asks the node to stop (SIGTERM) and waits for it, at most d.
func (n *killNode) stop(d time.Duration) error {
	if n.cmd == nil {
		return errors.New("not running")
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.exited:
		n.cmd = nil
		return err
	case <-time.After(d):
		n.kill()
		return fmt.Errorf("still running %v after SIGTERM; killed", d)
	}
}

func (n *killNode) cleanup() {
	n.kill()
	if n.t.Failed() {
		n.t.Logf("node log (last lines) in %s:\n%s", n.logPath, n.tail(80))
		// ANDROMEDA_KEEP_LOGS=DIR keeps whole node logs of a failed test
		// (its temporary directory goes with it).
		if dir := os.Getenv("ANDROMEDA_KEEP_LOGS"); dir != "" {
			if b, err := os.ReadFile(n.logPath); err == nil {
				name := strings.ReplaceAll(n.t.Name(), "/", "_") + "-" + filepath.Base(filepath.Dir(n.logPath)) + ".log"
				os.WriteFile(filepath.Join(dir, name), b, 0o644)
			}
		}
	}
}

func (n *killNode) logSize() int64 {
	fi, err := os.Stat(n.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// tail returns the last lines of the node's log.
func (n *killNode) tail(lines int) string {
	b, _ := os.ReadFile(n.logPath)
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// restartLog is what a node's log says about one start.
type restartLog struct {
	reconciled map[string]bool // run id → whether its state had committed
	// When the process driver passed its self-test and when the last
	// service was restored; zero if the log does not say.
	driverReady, restored time.Time
}

// restartSince reads the log the node wrote since offset.
func (n *killNode) restartSince(offset int64) restartLog {
	f, err := os.Open(n.logPath)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	f.Seek(offset, io.SeekStart)
	out := restartLog{reconciled: map[string]bool{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Time   time.Time `json:"time"`
			Msg    string    `json:"msg"`
			Run    string    `json:"run"`
			Driver string    `json:"driver"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line.Msg, "recorded a run whose state committed"):
			out.reconciled[line.Run] = true
		case strings.HasPrefix(line.Msg, "recorded a run the node stopped in the middle of"):
			out.reconciled[line.Run] = false
		case line.Msg == "driver ready" && line.Driver == "process":
			out.driverReady = line.Time
		case line.Msg == "service restored":
			out.restored = line.Time
		}
	}
	return out
}

// workers lists the processes in the worker cgroups of the node with
// the given pid (the process driver names them w-<node pid>-<seq>-<service>).
func workers(pid int) []string {
	mark := fmt.Sprintf("/%s%d-", "w-", pid)
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil || !bytes.Contains(cg, []byte(mark)) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, fmt.Sprintf("%s %q", e.Name(), bytes.TrimSpace(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))))
	}
	return out
}

// orphans lists the workers of the killed node with the given pid still
// alive after waiting up to d for them to go.
func orphans(pid int, d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		left := workers(pid)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// staleCgroups lists the worker cgroups of the node with the given pid
// left under /sys/fs/cgroup.
func staleCgroups(pid int) []string {
	prefix := fmt.Sprintf("w-%d-", pid)
	var out []string
	filepath.WalkDir("/sys/fs/cgroup", func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), prefix) {
			out = append(out, path)
			return filepath.SkipDir
		}
		if strings.Count(path, "/") >= 6 {
			return filepath.SkipDir
		}
		return nil
	})
	return out
}

// checkWriters reads each service's state through the API and looks up
// every writer it names that is not known found yet. A writer may be a run
// still finishing (cron ticks go on): it gets a few seconds to be
// recorded. It returns how many writers it looked up.
func (n *killNode) checkWriters(ctx context.Context, c *api.Client, iter int, found map[string]bool) int {
	t := n.t
	looked := 0
	for _, s := range killServices {
		snap, err := c.State(ctx, s.name)
		if err != nil {
			t.Fatalf("kill %d: state of %s: %v", iter, s.name, err)
		}
		for _, w := range snap.Writers {
			if found[w] {
				continue
			}
			looked++
			var err error
			for deadline := time.Now().Add(5 * time.Second); ; {
				if _, err = c.Run(ctx, s.name, w); err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("kill %d: state of %s (revision %d) names writer %s, which has no run record: %v", iter, s.name, snap.Revision, w, err)
				continue
			}
			found[w] = true
		}
	}
	return looked
}

// openOffline opens the bus of a stopped node's data dir, holding the
// dir's lock (the node must have left it unlocked); done closes the bus and
// releases the lock, so that the node can start on the dir again.
func openOffline(t *testing.T, data string) (b *bus.Bus, done func()) {
	t.Helper()
	lock, err := node.LockDataDir(data)
	if err != nil {
		t.Fatalf("the stopped node left the data dir locked: %v", err)
	}
	b, err = bus.Open(context.Background(), bus.Config{Dir: filepath.Join(data, "nats")})
	if err != nil {
		lock.Unlock()
		t.Fatal(err)
	}
	return b, func() { b.Close(); lock.Unlock() }
}

// openStoreOffline is openOffline and the store on it, as the crash tests
// read it (killStoreConfig).
func openStoreOffline(t *testing.T, data string) (st *store.Store, done func()) {
	t.Helper()
	b, done := openOffline(t, data)
	st, err := store.Open(context.Background(), b, killStoreConfig())
	if err != nil {
		done()
		t.Fatal(err)
	}
	return st, done
}

func killStoreConfig() store.Config {
	cfg := store.DefaultConfig()
	cfg.RunsPerService = killRunsPerService
	return cfg
}

// killAck is a fire the node answered: 200 with its run, or 429 with the
// recorded skip.
type killAck struct {
	service, id, outcome string
	skipped              bool
	iter                 int
}

func (a killAck) status() string {
	if a.skipped {
		return "429"
	}
	return "200"
}

type killLoadResult struct {
	acks    []killAck
	fires   int
	refused map[string]int // fires not acknowledged, by HTTP status or "no answer"
}

// killLoad fires both services continuously, two callers each, until
// wait.
type killLoad struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	res  killLoadResult
}

func startKillLoad(c *api.Client) *killLoad {
	l := &killLoad{stop: make(chan struct{}), res: killLoadResult{refused: map[string]int{}}}
	for _, s := range killServices {
		for range 2 {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for {
					select {
					case <-l.stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					r, err := c.Fire(ctx, s.name, nil)
					cancel()
					l.record(s.name, r, err)
					if err != nil {
						// The node is gone or busy: do not spin.
						select {
						case <-l.stop:
							return
						case <-time.After(20 * time.Millisecond):
						}
					}
				}
			}()
		}
	}
	return l
}

func (l *killLoad) record(service string, r api.Run, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.res.fires++
	var ae *api.Error
	switch {
	case err == nil:
		l.res.acks = append(l.res.acks, killAck{service: service, id: r.ID, outcome: r.Outcome})
	case errors.As(err, &ae) && ae.Status == 429 && ae.Run != nil:
		l.res.acks = append(l.res.acks, killAck{service: service, id: ae.Run.ID, outcome: ae.Run.Outcome, skipped: true})
	case errors.As(err, &ae):
		l.res.refused[strconv.Itoa(ae.Status)]++
	default:
		l.res.refused["no answer"]++
	}
}

// wait stops the callers (after the kill, so calls in flight meet it) and
// returns what they saw.
func (l *killLoad) wait() killLoadResult {
	close(l.stop)
	l.wg.Wait()
	return l.res
}

// allRuns reads every run record of a service, by id, and the ids recorded
// more than once.
func allRuns(t *testing.T, st *store.Store, service string) (map[string]store.Run, []string) {
	t.Helper()
	runs := map[string]store.Run{}
	var dups []string
	q := store.RunQuery{Limit: store.MaxListRuns}
	for {
		page, err := st.ListServiceRuns(context.Background(), q, service)
		if err != nil {
			t.Fatalf("list runs of %s: %v", service, err)
		}
		for _, r := range page.Runs {
			if _, ok := runs[r.ID]; ok {
				dups = append(dups, r.ID)
			}
			runs[r.ID] = r
		}
		if page.Next == "" {
			return runs, dups
		}
		q.Cursor = page.Next
	}
}

// countedValue is the counter value a run committed, if it committed one.
func countedValue(r store.Run, key string) (int, bool) {
	if (r.Outcome != "ok" && r.Outcome != "noop") || r.Output == nil || r.Output.State == nil {
		return 0, false
	}
	raw, ok := r.Output.State.Set[key]
	if !ok {
		return 0, false
	}
	var v int
	if json.Unmarshal(raw, &v) != nil {
		return 0, false
	}
	return v, true
}

// percentiles formats p50, p90 and max of d.
func percentiles(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	d = slices.Clone(d)
	slices.Sort(d)
	r := func(v time.Duration) time.Duration { return v.Round(time.Millisecond) }
	return fmt.Sprintf("p50 %v, p90 %v, max %v", r(d[len(d)/2]), r(d[len(d)*9/10]), r(d[len(d)-1]))
}

func firstInts(v []int, n int) []int { return v[:min(n, len(v))] }

// freeAddr returns a loopback address with a port free now.
