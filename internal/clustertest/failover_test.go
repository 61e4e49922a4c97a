package clustertest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// TestClusterHosts runs three nodes as separate hosts (containers of the
// static node binary on a private network) with cron services ticking
// every second, spread over the three by submitting each to one of them,
// a webhook service on n3 called through n1 and manual fires through n1
// all along:
//   - n3 is SIGKILLed: its services run again on n1 or n2 within 5 s of
//     lost_after; n3 restarted on its data rejoins and takes nothing back;
//   - n3 is cut off the network (a partition): the minority fires no tick,
//     the majority takes its services over; healed, n3 gives them up;
//   - over the whole time no tick runs twice, none is missed outside the
//     failover windows, and every fire and webhook answered with a run is
//     found in the run history afterwards;
//   - a flow of three modules, one on each node, run by n3 (so killed with
//     it) and fired through n1 all along: every message answered ran
//     once through each module, in the order fired.
//
// CI runs 45 services with 25 s between the faults (some 100 ticks per
// service), which crosses every path; ANDROMEDA_SOAK=1 runs 100 services
// long enough for 1,000 ticks each, the size the figures in BENCHMARKS
// are measured at.
func TestClusterHosts(t *testing.T) {
	services, phase := 45, 25*time.Second
	if os.Getenv("ANDROMEDA_SOAK") == "1" {
		services, phase = 100, 320*time.Second
	}
	answer, err := os.ReadFile(filepath.Join("..", "..", "bench", "testdata", "answer.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	mirror := buildMirror(t)
	c := newCluster(t)
	n1, n3 := c.hosts[0], c.hosts[2]
	up := map[string]string{"n1": api.NodeUp, "n2": api.NodeUp, "n3": api.NodeUp}
	for _, h := range c.hosts {
		c.waitHealth(h, up, 10*time.Second)
		c.waitDriver(h, "wasm", 30*time.Second)
	}
	ctx := context.Background()
	names := make([]string, services)
	placedOn := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for k, h := range c.hosts {
		wg.Go(func() {
			for i := k; i < services; i += 3 {
				name := fmt.Sprintf("tick-%03d", i)
				res, err := h.api.Submit(ctx, answerArchive(t, answer, name, tickTriggers))
				if err != nil {
					t.Errorf("submit %s to %s: %v", name, h.name, err)
					return
				}
				if res.Service.Node != h.name {
					t.Errorf("%s submitted to %s is placed on %q", name, h.name, res.Service.Node)
				}
				mu.Lock()
				names[i], placedOn[name] = name, h.name
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	began := time.Now()
	if _, err := n3.api.Submit(ctx, answerArchive(t, answer, "hook", hookTriggers)); err != nil {
		t.Fatalf("submit hook to n3: %v", err)
	}

	// Fires through n1 of a service on n2, and webhooks through n1 of the
	// service on n3, all along: every answered run must be in the history
	// at the end.
	fires := startFires(n1, names[1])
	defer fires.stop()
	// And a flow across the three nodes, run by n3, fired through n1.
	span := startSpan(t, c, mirror)
	defer span.stop()
	hooks := startHooks(n1, "/hooks/ct")
	defer hooks.stop()

	time.Sleep(phase)

	// 1. SIGKILL n3.
	killed := time.Now()
	c.kill(n3)
	c.waitHealth(n1, map[string]string{"n1": api.NodeUp, "n2": api.NodeUp, "n3": api.NodeLost}, lostAfter+15*time.Second)
	var onN3 []string
	for _, s := range names {
		if placedOn[s] == "n3" {
			onN3 = append(onN3, s)
		}
	}
	took := waitTakenOver(t, n1, onN3, "n3", killed, lostAfter+20*time.Second)
	t.Logf("kill: n3's %d services ran again elsewhere %v after the kill (lost_after %v, heartbeat %v)", len(onN3), took, lostAfter, heartbeat)
	if took > lostAfter+5*time.Second {
		t.Errorf("n3's services ran again elsewhere %v after the kill, more than 5 s past lost_after (%v)", took, lostAfter)
	}
	kill := window{killed, killed.Add(took)}
	c.start(n3)
	for _, h := range c.hosts {
		c.waitHealth(h, up, 15*time.Second)
	}
	time.Sleep(phase / 2)

	// 2. A partition: n3 holds services again (submitted to it), then is
	// cut off.
	var cutOnes []string
	for i := range 2 {
		name := fmt.Sprintf("cut-%02d", i)
		if _, err := n3.api.Submit(ctx, answerArchive(t, answer, name, tickTriggers)); err != nil {
			t.Fatalf("submit %s to n3: %v", name, err)
		}
		cutOnes = append(cutOnes, name)
		names = append(names, name)
	}
	time.Sleep(phase / 2)
	cut := time.Now()
	c.cut(n3)
	c.waitHealth(n1, map[string]string{"n1": api.NodeUp, "n2": api.NodeUp, "n3": api.NodeLost}, lostAfter+15*time.Second)
	tookCut := waitTakenOver(t, n1, cutOnes, "n3", cut, lostAfter+20*time.Second)
	t.Logf("partition: n3's %d services ran on the majority %v after the cut", len(cutOnes), tookCut)
	if tookCut > lostAfter+5*time.Second {
		t.Errorf("n3's services ran on the majority %v after the cut, more than 5 s past lost_after (%v)", tookCut, lostAfter)
	}
	partition := window{cut, cut.Add(tookCut)}
	time.Sleep(phase / 2)
	// Healing: n3 comes back with the higher RAFT terms of its elections
	// alone, and the cluster's leaders step down for them (NATS's RAFT has
	// no pre-vote): every stream elects again, within an election timeout
	// (at most 9 s) once the routes are back, and ticks wait meanwhile.
	// The window allowed for it is lost_after and 5 s from the reconnect.
	healed := time.Now()
	c.heal(n3)
	heal := window{healed, healed.Add(lostAfter + 5*time.Second)}
	for _, h := range c.hosts {
		c.waitHealth(h, up, 30*time.Second)
	}
	time.Sleep(time.Until(heal.to) + phase/2)

	// 3. The whole history.
	answered, hooked, spanned := fires.stop(), hooks.stop(), span.stop()
	windows := []window{kill, partition, heal}
	total, fewest := 0, -1
	for _, s := range names {
		got, err := readTicks(t, n1, s)
		if err != nil {
			t.Fatal(err)
		}
		total += len(got)
		if !slices.Contains(cutOnes, s) && (fewest < 0 || len(got) < fewest) {
			fewest = len(got)
		}
		checkGaps(t, s, got, windows)
		if slices.Contains(cutOnes, s) {
			// The minority fired nothing once cut off: its runs all end
			// before the cut, give or take a tick in flight.
			for at, node := range got {
				if node == "n3" && at.After(cut.Add(heartbeat+time.Second)) && at.Before(healed) {
					t.Errorf("%s: n3 fired the tick of %s while cut off (cut at %s)", s, at.Format("15:04:05.000"), cut.Format("15:04:05.000"))
				}
			}
		}
	}
	checkAnswered(t, n1, names[1], answered)
	checkAnswered(t, n1, "hook", hooked)
	checkSpan(t, n1, spanned)
	// The majority held the flow through the partition (taking it from n3
	// if n3 had it); healed, n3 has no reason to take it back.
	if f, err := n1.api.Flow(ctx, "span"); err != nil || f.Node == "n3" {
		t.Errorf("span after the partition healed: held by %q (%v); n3, cut off, must not take it from a live node", f.Node, err)
	}
	if len(hooked) == 0 || len(answered) == 0 {
		t.Errorf("%d fires and %d webhooks answered: the load did not run", len(answered), len(hooked))
	}
	t.Logf("%d services, %d ticks in all over %v (the fewest a service had: %d), %d fires and %d webhooks answered and found; windows: kill %v, partition %v, heal %v",
		len(names), total, time.Since(began).Round(time.Second), fewest, len(answered), len(hooked),
		kill.to.Sub(kill.from).Round(time.Millisecond), partition.to.Sub(partition.from).Round(time.Millisecond), heal.to.Sub(heal.from).Round(time.Millisecond))
}

// readTicks is ticks, asked again while a leader election makes reads
// fail for a moment.
func readTicks(t *testing.T, h *host, service string) (map[time.Time]string, error) {
	var err error
	for range 50 {
		var got map[time.Time]string
		if got, err = ticks(t, h, service); err == nil {
			return got, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, err
}

// waitTakenOver waits until each of services has a tick elsewhere than
// on node from ("": anywhere) after since, and returns how long after
// since the last of them got its first.
func waitTakenOver(t *testing.T, h *host, services []string, from string, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	first := map[string]time.Time{}
	deadline := time.Now().Add(within)
	for len(first) < len(services) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v, only %d of %d services of %s run elsewhere: %v", within, len(first), len(services), from, first)
		}
		for _, s := range services {
			if _, ok := first[s]; ok {
				continue
			}
			got, err := ticks(t, h, s)
			if err != nil {
				continue
			}
			var ts []time.Time
			for at, node := range got {
				if node != from && at.After(since) {
					ts = append(ts, at)
				}
			}
			if len(ts) > 0 {
				sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
				first[s] = ts[0]
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	var last time.Time
	for _, at := range first {
		if at.After(last) {
			last = at
		}
	}
	return last.Sub(since)
}

// fireLoad fires a service through one node, one fire after another, and
// keeps the ids of the runs answered.
type fireLoad struct {
	quit     chan struct{}
	done     sync.WaitGroup
	mu       sync.Mutex
	answered []answered
	once     sync.Once
}

// answered is a run a call was answered with, and when.
type answered struct {
	id string
	at time.Time
}

func startFires(h *host, service string) *fireLoad {
	return startLoad(250*time.Millisecond, func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if run, err := h.api.Fire(ctx, service, nil); err == nil {
			return run.ID
		}
		return ""
	})
}

// startLoad calls call every so often until stop, keeping the run ids it
// returns ("" for a call not answered with a run).
func startLoad(every time.Duration, call func() string) *fireLoad {
	f := &fireLoad{quit: make(chan struct{})}
	f.done.Go(func() {
		for {
			select {
			case <-f.quit:
				return
			case <-time.After(every):
			}
			if id := call(); id != "" {
				f.mu.Lock()
				f.answered = append(f.answered, answered{id, time.Now()})
				f.mu.Unlock()
			}
		}
	})
	return f
}

// stop ends the fires and returns the runs answered.
func (f *fireLoad) stop() []answered {
	f.once.Do(func() { close(f.quit) })
	f.done.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.answered)
}

// startHooks posts to path through h's API address, one request after
// another, and keeps the runs answered 200 (Andromeda-Run).
func startHooks(h *host, path string) *fireLoad {
	hc := &http.Client{Timeout: 10 * time.Second}
	return startLoad(100*time.Millisecond, func() string {
		resp, err := hc.Post("http://"+h.addr+path, "application/json", strings.NewReader(`{"hook": true}`))
		if err != nil {
			return ""
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return ""
		}
		return resp.Header.Get("Andromeda-Run")
	})
}

// checkAnswered fails t for each run in answered that the service's run
// history, as h lists it, does not hold. A service keeps its newest 1,000
// runs (store.Config.RunsPerService): runs answered before the oldest one
// listed have gone by retention, not loss, and are counted apart.
func checkAnswered(t *testing.T, h *host, service string, answered []answered) {
	t.Helper()
	runs, err := h.api.Runs(context.Background(), service, 1000)
	if err != nil {
		t.Fatalf("runs of %s: %v", service, err)
	}
	have := map[string]bool{}
	oldest := time.Now()
	for _, r := range runs {
		have[r.ID] = true
		if r.Start.Before(oldest) {
			oldest = r.Start
		}
	}
	var missing []string
	aged := 0
	for _, a := range answered {
		switch {
		case have[a.id]:
		case len(runs) >= 1000 && a.at.Before(oldest.Add(time.Second)):
			aged++
		default:
			missing = append(missing, a.id)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s: %d of %d runs answered are not in its history, the first: %v", service, len(missing), len(answered), missing[:min(5, len(missing))])
	}
	t.Logf("%s: %d runs answered, %d found, %d older than its newest 1,000 runs", service, len(answered), len(answered)-len(missing)-aged, aged)
}
