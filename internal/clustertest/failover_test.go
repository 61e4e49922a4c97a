package clustertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/gobuild"
)

// TestClusterHosts runs three nodes as separate hosts (containers of the
// static node binary on a private network) with cron services ticking
// every second, spread over the three by submitting each to one of them,
// and manual fires arriving through n1 all along:
//   - n3 is SIGKILLed: its services run again on n1 or n2 within a few
//     seconds of lost_after; n3 restarted on its data rejoins and takes
//     nothing back;
//   - n3 is cut off the network (a partition): the minority fires no tick,
//     the majority takes its services over; healed, n3 gives them up;
//   - over the whole time no tick runs twice, none is missed outside the
//     two failover windows, and every fire answered with a run is found
//     in the run history afterwards.
//
// CI runs 6 services about 60 s; ANDROMEDA_SOAK=1 runs 30 services for
// longer phases.
func TestClusterHosts(t *testing.T) {
	services, phase := 6, 12*time.Second
	if os.Getenv("ANDROMEDA_SOAK") == "1" {
		services, phase = 30, 60*time.Second
	}
	wasm := filepath.Join(t.TempDir(), "heartbeat.wasm")
	if err := gobuild.Wasm(context.Background(), filepath.Join("..", "..", "examples", "heartbeat"), wasm, gobuild.Command); err != nil {
		t.Fatalf("build the wasm service: %v", err)
	}
	c := newCluster(t)
	n1, n3 := c.hosts[0], c.hosts[2]
	up := map[string]string{"n1": api.NodeUp, "n2": api.NodeUp, "n3": api.NodeUp}
	for _, h := range c.hosts {
		c.waitHealth(h, up, 10*time.Second)
	}
	ctx := context.Background()
	var names []string
	placedOn := map[string]string{}
	for i := range services {
		name := fmt.Sprintf("tick-%02d", i)
		h := c.hosts[i%3]
		res, err := h.api.Submit(ctx, heartbeatArchive(t, wasm, name))
		if err != nil {
			t.Fatalf("submit %s to %s: %v", name, h.name, err)
		}
		if res.Service.Node != h.name {
			t.Errorf("%s submitted to %s is placed on %q", name, h.name, res.Service.Node)
		}
		names = append(names, name)
		placedOn[name] = h.name
	}

	// Fires through n1 of a service on n2, all along: every answered run
	// must be in the history at the end.
	fires := startFires(n1, names[1])
	defer fires.stop()

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
		if _, err := n3.api.Submit(ctx, heartbeatArchive(t, wasm, name)); err != nil {
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
	answered := fires.stop()
	windows := []window{kill, partition, heal}
	total := 0
	for _, s := range names {
		got, err := readTicks(t, n1, s)
		if err != nil {
			t.Fatal(err)
		}
		total += len(got)
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
	for _, id := range answered {
		if _, err := n1.api.Run(ctx, names[1], id); err != nil {
			t.Errorf("fire answered with run %s, not found afterwards: %v", id, err)
		}
	}
	t.Logf("%d services, %d ticks in all, %d fires answered and found; windows: kill %v, partition %v, heal %v",
		len(names), total, len(answered), kill.to.Sub(kill.from).Round(time.Millisecond), partition.to.Sub(partition.from).Round(time.Millisecond), heal.to.Sub(heal.from).Round(time.Millisecond))
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
	answered []string
	once     sync.Once
}

func startFires(h *host, service string) *fireLoad {
	f := &fireLoad{quit: make(chan struct{})}
	f.done.Go(func() {
		for {
			select {
			case <-f.quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			run, err := h.api.Fire(ctx, service, nil)
			cancel()
			if err == nil {
				f.mu.Lock()
				f.answered = append(f.answered, run.ID)
				f.mu.Unlock()
			}
		}
	})
	return f
}

// stop ends the fires and returns the runs answered.
func (f *fireLoad) stop() []string {
	f.once.Do(func() { close(f.quit) })
	f.done.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.answered)
}
