package wasm

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// waitFor waits until cond holds, failing t after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// invokeAsync invokes dep on another goroutine; the channel receives the
// Exit, or an Exit with Outcome Error and the error as Detail.
func invokeAsync(dep *deployment, timeout time.Duration, input string) <-chan sandbox.Exit {
	ch := make(chan sandbox.Exit, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		exit, err := dep.Invoke(ctx, []byte(input))
		if err != nil {
			exit = sandbox.Exit{Outcome: sandbox.Error, Detail: err.Error()}
		}
		ch <- exit
	}()
	return ch
}

func (b *budget) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiters.Len()
}

// TestBudget checks the budget's queue: first come first served, a waiter
// whose context ends leaves the queue and lets those behind it through.
func TestBudget(t *testing.T) {
	b := &budget{total: 100}
	ctx := context.Background()
	if err := b.acquire(ctx, 60); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { second <- b.acquire(ctx, 60) }()
	waitFor(t, "the second acquire waits", func() bool { return b.queued() == 1 })
	third := make(chan error, 1)
	go func() { third <- b.acquire(ctx, 10) }() // would fit, but queues behind the second
	waitFor(t, "the third acquire waits", func() bool { return b.queued() == 2 })

	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	err := b.acquire(short, 30)
	var be *budgetError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "node memory budget for wasm guests exhausted: waited") {
		t.Errorf("acquire past its deadline = %v, want a budget error", err)
	}

	b.release(60)
	if err := <-second; err != nil {
		t.Errorf("second acquire = %v", err)
	}
	if err := <-third; err != nil {
		t.Errorf("third acquire = %v", err)
	}
	if used, n := b.reserved(); used != 70 || n != 2 {
		t.Errorf("reserved = %d in %d, want 70 in 2", used, n)
	}

	// A waiter at the head that gives up lets a smaller one behind it in.
	big, cancelBig := context.WithCancel(ctx)
	bigDone := make(chan error, 1)
	go func() { bigDone <- b.acquire(big, 50) }()
	waitFor(t, "the big acquire waits", func() bool { return b.queued() == 1 })
	small := make(chan error, 1)
	go func() { small <- b.acquire(ctx, 20) }()
	waitFor(t, "the small acquire waits", func() bool { return b.queued() == 2 })
	cancelBig()
	if err := <-bigDone; err == nil {
		t.Error("cancelled acquire = nil")
	}
	if err := <-small; err != nil {
		t.Errorf("small acquire after the head gave up = %v", err)
	}
	b.release(60)
	b.release(10)
	b.release(20)
	if used, n := b.reserved(); used != 0 || n != 0 {
		t.Errorf("reserved after releasing all = %d in %d", used, n)
	}
}

// TestMemoryBudget runs two instances that together exceed the node's
// budget: the second waits and runs when the first finishes, or reports
// the budget when its deadline comes first. An idle warm instance is closed
// to make room.
func TestMemoryBudget(t *testing.T) {
	const limit = 1 << 20
	d := newDriver(t, Config{Memory: limit, MemoryBudget: limit + limit/2})
	dep := deployFile(t, d, "echo.wasm", sandbox.Spec{Mode: sandbox.ModeCommand})
	if dep.reserve != limit {
		t.Fatalf("echo reserves %d bytes, want %d", dep.reserve, limit)
	}
	// The first invocation to start holds its instance until released.
	entered, release := make(chan struct{}), make(chan struct{})
	var held atomic.Bool
	dep.onPhase = func(phase string) {
		if phase == "_start" && held.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
	}
	const in = `{"noop":"budget"}`
	first := invokeAsync(dep, 10*time.Second, in)
	<-entered
	if used, n := d.budget.reserved(); used != limit || n != 1 {
		t.Fatalf("budget while the first runs = %d in %d, want %d in 1", used, n, limit)
	}

	t.Run("deadline while waiting", func(t *testing.T) {
		exit := invoke(t, dep, 50*time.Millisecond, in)
		if exit.Outcome != sandbox.Skipped || !strings.HasPrefix(exit.Detail, "node memory budget for wasm guests exhausted: waited ") ||
			!strings.Contains(exit.Detail, "for 1 MiB, 1 MiB of 1536 KiB reserved by 1 other instances") {
			t.Errorf("Invoke = %s (%s), want skipped for the budget", exit.Outcome, exit.Detail)
		}
	})
	t.Run("cancelled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := dep.Invoke(ctx, []byte(in))
			done <- err
		}()
		waitFor(t, "the invocation waits", d.budget.waiting)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Invoke cancelled while waiting = %v, want %v", err, context.Canceled)
		}
	})

	second := invokeAsync(dep, 10*time.Second, in)
	waitFor(t, "the second invocation waits", d.budget.waiting)
	select {
	case exit := <-second:
		t.Fatalf("second invocation ran while the first held the memory: %s (%s)", exit.Outcome, exit.Detail)
	default:
	}
	close(release)
	for i, ch := range []<-chan sandbox.Exit{first, second} {
		if exit := <-ch; exit.Outcome != sandbox.OK || string(exit.Output) != in {
			t.Errorf("invocation %d = %s %q (%s), want ok", i+1, exit.Outcome, exit.Output, exit.Detail)
		}
	}
	if used, n := d.budget.reserved(); used != 0 || n != 0 {
		t.Errorf("budget after both = %d in %d, want none", used, n)
	}

	t.Run("idle instances make room", func(t *testing.T) {
		warm := deployFile(t, d, "testdata/reactor.wasm", sandbox.Spec{Mode: sandbox.ModeServer})
		if exit := invoke(t, warm, 5*time.Second, in); exit.Outcome != sandbox.OK {
			t.Fatalf("reactor = %s (%s)", exit.Outcome, exit.Detail)
		}
		if used, n := d.budget.reserved(); used != limit || n != 1 {
			t.Fatalf("budget with a warm reactor = %d in %d, want %d in 1", used, n, limit)
		}
		if exit := invoke(t, dep, 5*time.Second, in); exit.Outcome != sandbox.OK {
			t.Errorf("command with the budget held by an idle reactor = %s (%s), want ok", exit.Outcome, exit.Detail)
		}
		warm.mu.Lock()
		idle := len(warm.idle)
		warm.mu.Unlock()
		if idle != 0 {
			t.Errorf("idle reactor instances = %d, want 0 (closed to make room)", idle)
		}
		if exit := invoke(t, warm, 5*time.Second, in); exit.Outcome != sandbox.OK {
			t.Errorf("reactor after its instance was closed = %s (%s), want ok", exit.Outcome, exit.Detail)
		}
	})
}

// TestEvictOldestIdle fills a budget of two instances with three warm
// reactors: each call that needs room closes the instance idle longest,
// whichever deployment holds it, and the driver's idle order holds exactly
// the idle instances, through a stop too.
func TestEvictOldestIdle(t *testing.T) {
	const limit = 1 << 20
	d := newDriver(t, Config{Memory: limit, MemoryBudget: 2 * limit})
	deps := map[string]*deployment{}
	for _, name := range []string{"a", "b", "c"} {
		deps[name] = deployFile(t, d, "testdata/reactor.wasm", sandbox.Spec{Service: name, Mode: sandbox.ModeServer})
	}
	const in = `{"noop":"lru"}`
	warm := func() string {
		var s []string
		for _, name := range []string{"a", "b", "c"} {
			dep := deps[name]
			dep.mu.Lock()
			if len(dep.idle) > 0 {
				s = append(s, name)
			}
			dep.mu.Unlock()
		}
		if n := d.idle.len(); n != len(s) {
			t.Errorf("the driver's idle order holds %d instances, the deployments %d (%v)", n, len(s), s)
		}
		return strings.Join(s, ",")
	}
	for _, step := range []struct{ call, want string }{
		{"a", "a"},
		{"b", "a,b"},
		{"c", "b,c"}, // a idle longest
		{"b", "b,c"}, // a hit: nothing closed
		{"a", "a,b"}, // c idle longest now
		{"c", "a,c"},
	} {
		if exit := invoke(t, deps[step.call], 5*time.Second, in); exit.Outcome != sandbox.OK {
			t.Fatalf("call %s = %s (%s)", step.call, exit.Outcome, exit.Detail)
		}
		if got := warm(); got != step.want {
			t.Errorf("after a call of %s, warm: %s, want %s", step.call, got, step.want)
		}
	}
	if err := deps["a"].Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := warm(); got != "c" {
		t.Errorf("after a stopped, warm: %s, want c", got)
	}
	if used, n := d.budget.reserved(); used != limit || n != 1 {
		t.Errorf("budget = %d in %d, want %d in 1", used, n, limit)
	}
}
