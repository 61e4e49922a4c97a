package wasm

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestSpinOnEveryP runs more guests that spin without ever calling the host
// than the Go runtime has Ps, with a collector and a sleeper beside them.
// Native code cannot be preempted: the patched wazero's loop headers exit
// to Go (and yield) every 1024 iterations so that the timers that stop the
// guests fire, the collector's stop-the-world completes and the rest of the
// node keeps running. Each guest must time out near its deadline, and the
// sleeper must not be held up for long. (With the safe point taken out of
// the patch, this test stalls the whole process: no P is left to run the
// timers, and the collector waits forever for the spinners to stop.)
func TestSpinOnEveryP(t *testing.T) {
	d := newDriver(t, Config{})
	dep := deployFile(t, d, "testdata/spin.wasm", sandbox.Spec{Mode: sandbox.ModeCommand})
	const deadline = 300 * time.Millisecond
	n := runtime.GOMAXPROCS(0) + 1

	stop := make(chan struct{})
	var side sync.WaitGroup
	var gcs int
	var lateness time.Duration
	side.Add(2)
	go func() { // the collector: each cycle stops the world
		defer side.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			runtime.GC()
			gcs++
			time.Sleep(5 * time.Millisecond)
		}
	}()
	go func() { // the sleeper: how late does a 1 ms timer wake it?
		defer side.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			time.Sleep(time.Millisecond)
			lateness = max(lateness, time.Since(start)-time.Millisecond)
		}
	}()

	took := make([]time.Duration, n)
	exits := make([]sandbox.Exit, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			exits[i] = <-invokeAsync(dep, deadline, "")
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	close(stop)
	side.Wait()

	for i := range n {
		if exits[i].Outcome != sandbox.Timeout {
			t.Errorf("spinner %d = %s (%s), want timeout", i, exits[i].Outcome, exits[i].Detail)
		}
		// Generous: the machine running the tests may be loaded. The
		// overshoot is logged for the record.
		if took[i] > deadline+500*time.Millisecond {
			t.Errorf("spinner %d stopped after %v, deadline %v", i, took[i], deadline)
		}
	}
	if lateness > 500*time.Millisecond {
		t.Errorf("a 1 ms sleep beside %d spinners woke up to %v late", n, lateness)
	}
	if gcs == 0 {
		t.Error("no garbage collection completed beside the spinners")
	}
	t.Logf("%d spinners (GOMAXPROCS %d), deadline %v: stopped after %v; %d GCs beside them; a 1 ms sleep woke up to %v late",
		n, runtime.GOMAXPROCS(0), deadline, took, gcs, lateness)
}
