package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/wasm"
)

// intercepted is a real driver whose invocations a test can step into:
// each Invoke goes through the test's around function, which sees the
// run's input, may act (block, fire another run) before the real guest
// runs, and sees what the guest returned. The node holds the run's
// concurrency slot and has read its state before Invoke, and writes the
// state after it returns, so around acts inside both windows.
type intercepted struct {
	sandbox.Driver

	mu     sync.Mutex
	around func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error)
	// deploying, when set, runs at the start of every Deploy.
	deploying func(ctx context.Context, spec sandbox.Spec)
}

// realWasm returns the wasm driver the node would make, intercepted.
func realWasm(t testing.TB) *intercepted {
	return &intercepted{Driver: wasm.New(wasm.Config{CacheDir: filepath.Join(sharedCache(t), "wasm")})}
}

// setAround sets the function every Invoke goes through from now on; nil
// lets invocations through untouched.
func (d *intercepted) setAround(f func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.around = f
}

func (d *intercepted) Deploy(ctx context.Context, spec sandbox.Spec) (sandbox.Deployment, error) {
	if d.deploying != nil {
		d.deploying(ctx, spec)
	}
	dep, err := d.Driver.Deploy(ctx, spec)
	if err != nil {
		return nil, err
	}
	return interceptedDeployment{Deployment: dep, d: d}, nil
}

type interceptedDeployment struct {
	sandbox.Deployment
	d *intercepted
}

func (dep interceptedDeployment) Invoke(ctx context.Context, input []byte) (sandbox.Exit, error) {
	dep.d.mu.Lock()
	around := dep.d.around
	dep.d.mu.Unlock()
	invoke := func() (sandbox.Exit, error) { return dep.Deployment.Invoke(ctx, input) }
	if around == nil {
		return invoke()
	}
	var in contract.Input
	if err := json.Unmarshal(input, &in); err != nil {
		return sandbox.Exit{}, fmt.Errorf("intercept: %w", err)
	}
	return around(ctx, in, invoke)
}

// editManifest replaces old by new in dir's andromeda.yaml, failing the
// test if old is not there.
func editManifest(t testing.TB, dir string, pairs ...string) {
	t.Helper()
	path := filepath.Join(dir, "andromeda.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := string(b)
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(m, pairs[i]) {
			t.Fatalf("%s has no %q to replace", path, pairs[i])
		}
		m = strings.Replace(m, pairs[i], pairs[i+1], 1)
	}
	if err := os.WriteFile(path, []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
}
