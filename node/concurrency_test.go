package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestConcurrencyBoundSkips: with resources.concurrency 2 and two runs held
// inside their invocation, each of five further firings is skipped:
// answered 429 with Retry-After and the skipped run, recorded with its
// reason, and never invoked. The two held runs then complete, and the bound
// admits a run again.
func TestConcurrencyBoundSkips(t *testing.T) {
	boundSkips(t, "timeout: 30s, concurrency: 2", 2)
}

// TestDefaultConcurrency: a service that sets no resources.concurrency
// runs four firings at once (parallel runs are the default; a service
// owns its idempotency through its state's compare-and-swap), and the
// fifth and later are skipped.
func TestDefaultConcurrency(t *testing.T) {
	boundSkips(t, "timeout: 30s", 4)
}

// boundSkips holds bound runs of the greeter example, its resources set
// to resources, inside their invocation, checks that five further
// firings are skipped, then releases them.
func boundSkips(t *testing.T, resources string, bound int) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv)
	dir := example(t, "greeter")
	editManifest(t, dir, "timeout: 1s, concurrency: 4", resources)
	if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
		t.Fatal(err)
	}

	// Every invocation says it has started, then waits for release: the
	// node holds the run's slot all that time.
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free) // before the node closes, if the test ends early
	entered := make(chan string, 16)
	var invoked atomic.Int32
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		invoked.Add(1)
		entered <- in.RunID
		select {
		case <-release:
		case <-ctx.Done():
		}
		return invoke()
	})
	const over = 5
	type fired struct {
		run api.Run
		err error
	}
	held := make(chan fired, bound)
	for range bound {
		go func() {
			r, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"held"}`))
			held <- fired{r, err}
		}()
	}
	for range bound {
		select {
		case <-entered:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d runs entered their invocation in 30 s, want %d", invoked.Load(), bound)
		}
	}

	for i := range over {
		// A firing the bound let through would wait for release: give up
		// on it rather than hang.
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := n.op.Fire(fctx, "greeter", json.RawMessage(`{"name":"over"}`))
		cancel()
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.RetryAfter < 1 || ae.Run == nil {
			t.Fatalf("firing %d over the bound = %+v, %v; want 429 with Retry-After and the skipped run", i, r, err)
		}
		skipped := *ae.Run
		if skipped.Outcome != "skipped" || !strings.Contains(skipped.Noop, "concurrency limit reached") || !strings.Contains(skipped.Noop, fmt.Sprintf("resources.concurrency = %d", bound)) {
			t.Errorf("firing %d over the bound: run %+v; want skipped, saying the concurrency limit of %d was reached", i, skipped, bound)
		}
		got, err := n.op.Run(ctx, "greeter", skipped.ID)
		if err != nil || got.Outcome != "skipped" || got.Noop != skipped.Noop {
			t.Errorf("skipped run %s as recorded = %+v, %v; want skipped with %q", skipped.ID, got, err, skipped.Noop)
		}
	}
	if got := invoked.Load(); int(got) != bound {
		t.Errorf("%d invocations with %d runs held and %d skipped, want %d: a skipped run reached the guest", got, bound, over, bound)
	}

	free()
	for range bound {
		f := <-held
		if f.err != nil || f.run.Outcome != "ok" || len(f.run.Output.Emit) != 1 || !strings.Contains(string(f.run.Output.Emit[0].Message), "Hello, held!") {
			t.Errorf("held run = %+v, %v; want ok with its greeting", f.run, f.err)
		}
	}
	// The slots are free again.
	if r, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"after"}`)); err != nil || r.Outcome != "ok" {
		t.Errorf("fire after the held runs = %+v, %v; want ok", r, err)
	}
	runs, err := n.op.Runs(ctx, "greeter", 100)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range runs {
		count[r.Outcome]++
	}
	if len(runs) != bound+over+1 || count["ok"] != bound+1 || count["skipped"] != over {
		t.Errorf("recorded runs = %v, want %d ok and %d skipped", count, bound+1, over)
	}
}
