package docker

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
)

// input is the contract Input of a guest operation, with run id run.
func input(t testing.TB, run string, msg map[string]any) []byte {
	t.Helper()
	m, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(contract.Input{RunID: run, Service: "containers", Trigger: contract.Trigger{Kind: "manual"}, Message: m, State: map[string]json.RawMessage{}, Config: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deploy deploys spec on d and stops it when t ends.
func deploy(t testing.TB, d *Driver, spec sandbox.Spec) sandbox.Deployment {
	t.Helper()
	return deployCtx(t, context.Background(), d, spec)
}

// deployCtx is deploy with the values of ctx (a progress reporter).
func deployCtx(t testing.TB, ctx context.Context, d *Driver, spec sandbox.Spec) sandbox.Deployment {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	dep, err := d.Deploy(ctx, spec)
	if err != nil {
		t.Fatalf("Deploy() = %v", err)
	}
	t.Cleanup(func() { dep.Stop(context.Background()) })
	return dep
}

// TestContainers: a server-mode deployment's containers carry the labels
// and show in its Placement; a command-mode container is labelled with
// its run; Stop removes every container.
func TestContainers(t *testing.T) {
	d := newDriver(t, testConfig())
	img := guestImage(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	dep := deploy(t, d, sandbox.Spec{Service: "containers", Version: "7", Image: img.ID, Limits: sandbox.Limits{Concurrency: 2}})
	pl := dep.(sandbox.Placed).Placement()
	names := containers(t, d, LabelService+"=containers")
	slices.Sort(names)
	if pl.Kind != sandbox.PlacementNew || pl.Image != img.ID || !slices.Equal(pl.Containers, names) || len(names) != 2 || !strings.Contains(pl.Reason, img.ID) {
		t.Errorf("Placement() = %+v, want kind new, image %s and the 2 containers labelled with the service %v", pl, img.ID, names)
	}
	for _, label := range []string{LabelVersion + "=7", LabelRole + "=" + RoleWorker, LabelInstance + "=" + d.instance} {
		// Other containers may carry a label too (another test's workers,
		// a container a killed run left): both of this service's must.
		if got := containers(t, d, label); len(names) != 2 || !slices.Contains(got, names[0]) || !slices.Contains(got, names[1]) {
			t.Errorf("containers labelled %s: %v, want both of %v", label, got, names)
		}
	}
	if err := dep.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if left := containers(t, d, LabelService+"=containers"); len(left) > 0 {
		t.Errorf("containers after Stop: %v", left)
	}

	cmd := deploy(t, d, sandbox.Spec{Service: "containers-cmd", Image: img.ID, Mode: sandbox.ModeCommand})
	done := make(chan sandbox.Exit, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() {
		exit, _ := cmd.Invoke(runCtx, input(t, "run-42", map[string]any{"do": "sleep"}))
		done <- exit
	}()
	var running []string
	for deadline := time.Now().Add(20 * time.Second); len(running) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		running = containers(t, d, LabelRun+"=run-42")
	}
	stop()
	<-done
	if len(running) != 1 {
		t.Errorf("containers labelled with the run: %v, want the invocation's one", running)
	}
}

// TestVolumesAndNetwork: a volume is writable at its path and its files
// land in the host directory; with network any the container reaches the
// engine's bridge gateway and the run's usage counts its bytes.
func TestVolumesAndNetwork(t *testing.T) {
	d := newDriver(t, testConfig())
	img := guestImage(t, d)
	cli, err := d.client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bridge, err := cli.NetworkInspect(ctx, "bridge", client.NetworkInspectOptions{})
	if err != nil || len(bridge.Network.IPAM.Config) == 0 {
		t.Fatalf("the engine's bridge network: %v", err)
	}
	gwAddr := bridge.Network.IPAM.Config[0].Gateway
	if !gwAddr.IsValid() {
		// The engine assigns the subnet's first address to the bridge.
		gwAddr = bridge.Network.IPAM.Config[0].Subnet.Addr().Next()
	}
	gw := gwAddr.String()
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b := make([]byte, 5)
			n, _ := c.Read(b)
			c.Close()
			got <- string(b[:n])
		}
	}()
	vol := t.TempDir()
	if err := os.Chmod(vol, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand} {
		t.Run(string(mode), func(t *testing.T) {
			dep := deploy(t, d, sandbox.Spec{
				Service: "volnet-" + string(mode), Image: img.ID, Mode: mode,
				Network: sandbox.Network{Any: true},
				Volumes: []sandbox.Volume{{Name: "data", Dir: vol, Path: "/data"}},
			})
			exit, err := dep.Invoke(ctx, input(t, "r", map[string]any{"do": "writefile", "path": "/data/" + string(mode)}))
			if err != nil || !strings.Contains(string(exit.Output), "writefile: ok") {
				t.Errorf("writefile /data/%s = %s %s, %v", mode, exit.Output, exit.Detail, err)
			}
			if b, err := os.ReadFile(filepath.Join(vol, string(mode))); err != nil || string(b) != "x" {
				t.Errorf("the volume's file on the host: %q, %v", b, err)
			}
			exit, err = dep.Invoke(ctx, input(t, "r", map[string]any{"do": "dial", "addr": ln.Addr().String()}))
			if err != nil || !strings.Contains(string(exit.Output), "dial: ok") {
				t.Fatalf("dial %s = %s %s, %v", ln.Addr(), exit.Output, exit.Detail, err)
			}
			select {
			case s := <-got:
				if s != "hello" {
					t.Errorf("the listener read %q, want hello", s)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("the listener got no connection")
			}
			if exit.Usage.NetworkTx <= 0 || exit.Usage.NetworkRx <= 0 {
				t.Errorf("usage of the dial: %+v, want network bytes both ways", exit.Usage)
			}
			t.Logf("usage of the dial: %+v", exit.Usage)
		})
	}
}

// TestClose: Close stops the deployments still running and removes their
// containers and raw workers'; the driver then refuses to deploy.
func TestClose(t *testing.T) {
	d := New(testConfig())
	newDriver(t, testConfig()) // skips without an engine
	img := guestImage(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.Deploy(ctx, sandbox.Spec{Service: "close", Image: img.ID, Limits: sandbox.Limits{Concurrency: 2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.StartRaw(ctx, sandbox.Spec{Service: "close", Image: img.ID}); err != nil {
		t.Fatal(err)
	}
	if got := containers(t, d, LabelInstance+"="+d.instance); len(got) != 3 {
		t.Fatalf("containers before Close: %v, want 3", got)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if left := containers(t, New(testConfig()), LabelInstance+"="+d.instance); len(left) > 0 {
		t.Errorf("containers after Close: %v", left)
	}
	if _, err := d.Deploy(ctx, sandbox.Spec{Service: "close", Image: img.ID}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Deploy after Close = %v, want an error saying the driver is closed", err)
	}
}

// TestStartCutByDeadline: a command-mode invocation whose container has
// not started by its deadline (a Python worker takes longer than 150 ms)
// returns a timeout at the deadline, not after the engine has removed the
// container, and Stop still leaves no container behind.
func TestStartCutByDeadline(t *testing.T) {
	dir, entry := archiveGuest(t, lang.Python)
	d := newDriver(t, archiveConfig(t, lang.Python))
	dep := deploy(t, d, sandbox.Spec{Service: "cut-start", Dir: dir, Entry: entry, Language: lang.Python, Mode: sandbox.ModeCommand})
	const slack = 250 * time.Millisecond // the old synchronous removal took 400 ms and more
	for _, timeout := range []time.Duration{50 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond} {
		start := time.Now()
		r, err := sandbox.CallRaw(context.Background(), dep, input(t, "", map[string]any{"do": "spin"}), timeout)
		took := time.Since(start)
		if err != nil || r.Outcome != sandbox.Timeout {
			t.Fatalf("timeout %v: outcome %s, error %v, want a timeout", timeout, r.Outcome, err)
		}
		if took > timeout+slack {
			t.Errorf("timeout %v: returned after %v, want at most %v", timeout, took, timeout+slack)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := dep.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if left := containers(t, d, LabelService+"=cut-start"); len(left) > 0 {
		t.Errorf("containers after Stop: %v", left)
	}
}
