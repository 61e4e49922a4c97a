package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/internal/dockerimg"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
)

// The escape tests run the probe guest (testdata/probe) in containers of the
// real engine and check, from inside, that each way out is closed: the
// network without a grant, memory and time past their limits, writes outside
// the scratch directory, the host's files, the engine's socket and
// privileges, a fork bomb. TestEscapeEngineGone* check what the driver
// does when the engine goes away (a proxy in front of its socket is cut)
// or hangs (the proxy stalls) in the middle of a run, and that nothing is
// left behind once it is back. TestEscapeVolumes, TestEscapeEngineGoneErrors
// and TestEscapeEngineGoneStop fail on the driver as first merged: each
// shows a bug its comment describes.

// probePkg is the import path of the escape tests' guest.
const probePkg = "github.com/andromeda-runner/andromeda/sandbox/docker/testdata/probe"

// escapeScratch is the scratch size the escape tests' driver gives /tmp.
const escapeScratch = 8 << 20

var escapeProbe struct {
	once sync.Once
	img  dockerimg.Image
	err  error
}

// escapeEnv returns the engine client (skipping, or failing under
// ANDROMEDA_CI_STRICT=1, without an engine) and the probe's image, built
// once per test binary.
func escapeEnv(t *testing.T) (*client.Client, dockerimg.Image) {
	t.Helper()
	cli := dockerimg.Client(t)
	escapeProbe.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		escapeProbe.img, escapeProbe.err = dockerimg.Exec(ctx, cli, "probe", probePkg)
	})
	if escapeProbe.err != nil {
		t.Fatalf("build the probe image: %v", escapeProbe.err)
	}
	return cli, escapeProbe.img
}

// escapeDriver returns a driver for the escape tests with its own node id
// (so that its containers are told apart by label) and cfg's other fields;
// Scratch defaults to escapeScratch; it returns the driver and its node id.
// At the end of the test it closes the driver and removes whatever the
// node's label still marks.
func escapeDriver(t *testing.T, cli *client.Client, cfg Config) (*Driver, string) {
	t.Helper()
	if cfg.Node == "" {
		cfg.Node = fmt.Sprintf("escape-%d", time.Now().UnixNano())
	}
	if cfg.Scratch == 0 {
		cfg.Scratch = escapeScratch
	}
	d := New(cfg)
	t.Cleanup(func() {
		_ = d.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for _, c := range escapeContainers(t, cli, cfg.Node) {
			_, _ = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		}
	})
	return d, cfg.Node
}

// escapeSpec is the probe as an image service in mode with limits small
// enough to be hit quickly.
func escapeSpec(img dockerimg.Image, mode sandbox.Mode) sandbox.Spec {
	return sandbox.Spec{
		Service: "escape", Version: "1", Language: "exec", Mode: mode,
		Image: img.ID, Command: []string{"/bin/probe"},
		Limits: sandbox.Limits{Memory: 64 << 20, Pids: 64, Concurrency: 1, Timeout: 10 * time.Second},
	}
}

// escapeDeploy deploys spec on d and stops it at the end of the test.
func escapeDeploy(t *testing.T, d *Driver, spec sandbox.Spec) sandbox.Deployment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dep, err := d.Deploy(ctx, spec)
	if err != nil {
		t.Fatalf("Deploy(%s, %s) = %v", spec.Service, spec.Mode, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = dep.Stop(ctx)
	})
	return dep
}

// escapeRun runs one operation of the probe through sandbox.Call, as the
// node does, and returns the judged result; timeout 0 leaves the
// deployment's own.
func escapeRun(t *testing.T, dep sandbox.Deployment, timeout time.Duration, op map[string]any) sandbox.Result {
	t.Helper()
	msg, err := json.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	in := contract.Input{RunID: fmt.Sprintf("run-escape-%d", time.Now().UnixNano()), Service: "escape", Trigger: contract.Trigger{Kind: "manual"}, Message: msg}
	r, err := sandbox.Call(context.Background(), dep, in, timeout)
	if err != nil {
		t.Fatalf("Call(%s) = %v", msg, err)
	}
	return r
}

// escapeNoop fails t unless r is a noop and returns its reason.
func escapeNoop(t *testing.T, r sandbox.Result) string {
	t.Helper()
	if r.Outcome != sandbox.Noop {
		t.Fatalf("outcome %s (%s, output %.300s), want noop", r.Outcome, r.Error, r.Raw)
	}
	return r.Output.Noop
}

// escapeEmit fails t unless r emits one message and decodes it into v.
func escapeEmit(t *testing.T, r sandbox.Result, v any) {
	t.Helper()
	if r.Outcome != sandbox.OK || len(r.Output.Emit) != 1 {
		t.Fatalf("outcome %s (%s, output %.300s), want one emit", r.Outcome, r.Error, r.Raw)
	}
	if err := json.Unmarshal(r.Output.Emit[0].Message, v); err != nil {
		t.Fatal(err)
	}
}

// escapeContainers lists the containers, running or not, labelled with
// node (and, when given, key=value labels).
func escapeContainers(t *testing.T, cli *client.Client, node string, labels ...string) []escapeContainer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := make(client.Filters).Add("label", append([]string{"andromeda.node=" + node}, labels...)...)
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatalf("list the containers of node %s: %v", node, err)
	}
	out := make([]escapeContainer, 0, len(res.Items))
	for _, c := range res.Items {
		out = append(out, escapeContainer{ID: c.ID, Names: c.Names, State: string(c.State), Labels: c.Labels})
	}
	return out
}

// escapeContainer is what the escape tests look at in a container list.
type escapeContainer struct {
	ID     string
	Names  []string
	State  string
	Labels map[string]string
}

func (c escapeContainer) String() string {
	return fmt.Sprintf("%.12s %v (%s, run %q)", c.ID, c.Names, c.State, c.Labels["andromeda.run"])
}

// escapeWaitGone polls until none of ids is among node's containers, and fails t
// after within.
func escapeWaitGone(t *testing.T, cli *client.Client, node string, ids map[string]bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		var left []escapeContainer
		for _, c := range escapeContainers(t, cli, node) {
			if ids == nil || ids[c.ID] {
				left = append(left, c)
			}
		}
		if len(left) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("containers still there %v after: %v", within, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// escapeBridgeAddr returns an address of this host on the engine's default
// bridge network (its gateway, which containers on the bridge can reach),
// or fails t.
func escapeBridgeAddr(t *testing.T, cli *client.Client) netip.Addr {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cli.NetworkInspect(ctx, "bridge", client.NetworkInspectOptions{})
	if err != nil {
		t.Fatalf("inspect the bridge network: %v", err)
	}
	var subnets []netip.Prefix
	for _, c := range res.Network.IPAM.Config {
		if c.Gateway.IsValid() {
			return c.Gateway
		}
		if c.Subnet.IsValid() {
			subnets = append(subnets, c.Subnet)
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		for _, s := range subnets {
			if s.Contains(p.Addr()) {
				return p.Addr()
			}
		}
	}
	t.Fatalf("no address of this host is on the bridge network's subnets %v", subnets)
	return netip.Addr{}
}

// escapeListen listens on addr:0 and reports, on the returned channel, the
// address of the first connection it accepts.
func escapeListen(t *testing.T, addr netip.Addr) (net.Listener, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatalf("listen on the bridge address %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		accepted <- c.RemoteAddr().String()
		c.Close()
	}()
	return ln, accepted
}

// TestEscapeNetwork checks that a service granted no network can neither
// dial this host on the bridge network nor resolve a name and sees no
// interface but loopback, and that one granted any network can dial the
// same listener (so the refusal is the grant's doing, not the address's).
func TestEscapeNetwork(t *testing.T) {
	cli, img := escapeEnv(t)
	d, _ := escapeDriver(t, cli, Config{})
	gw := escapeBridgeAddr(t, cli)

	t.Run("none", func(t *testing.T) {
		dep := escapeDeploy(t, d, escapeSpec(img, sandbox.ModeServer))
		ln, accepted := escapeListen(t, gw)
		got := escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "dial", "addr": ln.Addr().String()}))
		if !strings.HasPrefix(got, "dial: error:") {
			t.Errorf("dial %s without a grant: %q, want an error", ln.Addr(), got)
		}
		select {
		case from := <-accepted:
			t.Errorf("the listener at %s accepted a connection from %s", ln.Addr(), from)
		case <-time.After(100 * time.Millisecond):
		}
		t.Logf("dial %s: %s", ln.Addr(), got)

		got = escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "resolve", "name": "deb.debian.org"}))
		if !strings.HasPrefix(got, "resolve: error:") {
			t.Errorf("resolve without a grant: %q, want an error", got)
		}
		t.Logf("resolve: %s", got)

		var ifs map[string][]string
		escapeEmit(t, escapeRun(t, dep, 0, map[string]any{"do": "interfaces"}), &ifs)
		for name, addrs := range ifs {
			if name != "lo" {
				t.Errorf("the guest sees interface %s %v without a grant", name, addrs)
			}
		}
	})

	t.Run("hosts", func(t *testing.T) {
		// A grant of one endpoint must not open the rest: the driver
		// either refuses the spec or keeps other addresses out.
		spec := escapeSpec(img, sandbox.ModeServer)
		spec.Network = sandbox.Network{Hosts: []string{"example.com:443"}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dep, err := d.Deploy(ctx, spec)
		if err != nil {
			if !errors.Is(err, sandbox.ErrUnsupported) {
				t.Errorf("Deploy with network hosts: %v, want ErrUnsupported or a deployment", err)
			}
			t.Logf("network hosts refused: %v", err)
			return
		}
		t.Cleanup(func() { _ = dep.Stop(context.Background()) })
		ln, accepted := escapeListen(t, gw)
		got := escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "dial", "addr": ln.Addr().String()}))
		if !strings.HasPrefix(got, "dial: error:") {
			t.Errorf("dial %s with only example.com:443 granted: %q, want an error", ln.Addr(), got)
		}
		select {
		case from := <-accepted:
			t.Errorf("the listener at %s accepted a connection from %s, which only example.com:443 was granted", ln.Addr(), from)
		case <-time.After(100 * time.Millisecond):
		}
	})

	t.Run("any", func(t *testing.T) {
		spec := escapeSpec(img, sandbox.ModeServer)
		spec.Network = sandbox.Network{Any: true}
		dep := escapeDeploy(t, d, spec)
		ln, accepted := escapeListen(t, gw)
		got := escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "dial", "addr": ln.Addr().String()}))
		if got != "dial: ok" {
			t.Errorf("dial %s with network any: %q, want ok", ln.Addr(), got)
		}
		select {
		case from := <-accepted:
			t.Logf("the listener at %s accepted %s", ln.Addr(), from)
		case <-time.After(2 * time.Second):
			t.Errorf("the listener at %s accepted nothing from a guest granted any network", ln.Addr())
		}
	})
}

// TestEscapeOOM checks that a guest allocating past Limits.Memory ends as
// oom, in both modes, and that the deployment serves the next call.
func TestEscapeOOM(t *testing.T) {
	cli, img := escapeEnv(t)
	d, _ := escapeDriver(t, cli, Config{})
	for _, mode := range []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand} {
		t.Run(string(mode), func(t *testing.T) {
			spec := escapeSpec(img, mode)
			spec.Limits.Memory = 48 << 20
			dep := escapeDeploy(t, d, spec)
			start := time.Now()
			r := escapeRun(t, dep, 0, map[string]any{"do": "balloon"})
			if r.Outcome != sandbox.OOM {
				t.Fatalf("balloon past %d bytes: outcome %s (%s), want oom", spec.Limits.Memory, r.Outcome, r.Error)
			}
			t.Logf("balloon: oom after %v: %s (peak %d bytes)", time.Since(start), r.Error, r.Usage.PeakMemory)
			if got := escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "noop", "reason": "alive"})); got != "alive" {
				t.Errorf("after the oom: %q", got)
			}
		})
	}
}

// TestEscapeTimeout checks that a guest spinning past its timeout ends as
// timeout soon after it, and that the container it ran in is gone.
func TestEscapeTimeout(t *testing.T) {
	cli, img := escapeEnv(t)
	const slack = 2 * time.Second
	// Command mode starts a container in the run's time: its timeout
	// leaves room for the start, so that the guest spins before it ends.
	for mode, timeout := range map[sandbox.Mode]time.Duration{sandbox.ModeServer: 500 * time.Millisecond, sandbox.ModeCommand: 2 * time.Second} {
		t.Run(string(mode), func(t *testing.T) {
			d, node := escapeDriver(t, cli, Config{})
			dep := escapeDeploy(t, d, escapeSpec(img, mode))
			var before map[string]bool
			if mode == sandbox.ModeServer {
				// The warm worker's container: the one the spin runs in.
				escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "noop", "reason": "warm"}))
				before = map[string]bool{}
				for _, c := range escapeContainers(t, cli, node, "andromeda.service=escape") {
					before[c.ID] = true
				}
				if len(before) == 0 {
					t.Fatalf("no container labelled andromeda.node=%s, andromeda.service=escape runs the warm worker", node)
				}
			}
			start := time.Now()
			r := escapeRun(t, dep, timeout, map[string]any{"do": "spin"})
			took := time.Since(start)
			if r.Outcome != sandbox.Timeout {
				t.Fatalf("spin: outcome %s (%s), want timeout", r.Outcome, r.Error)
			}
			if strings.Contains(r.Error, "did not start") {
				t.Fatalf("spin: %s: the guest never ran, the test proves nothing", r.Error)
			}
			if took > timeout+slack {
				t.Errorf("spin with a %v timeout returned after %v", timeout, took)
			}
			// Command mode: every container of the node is the run's.
			gone := escapeWaitGone(t, cli, node, before, 5*time.Second)
			t.Logf("spin: timeout after %v, its container gone %v later (%s)", took, gone, r.Error)
		})
	}
}

// TestEscapeWrites checks that the guest cannot write outside its scratch
// directory (the root file system is read-only) and that the scratch
// directory, writable, is capped at Config.Scratch.
func TestEscapeWrites(t *testing.T) {
	cli, img := escapeEnv(t)
	d, _ := escapeDriver(t, cli, Config{})
	dep := escapeDeploy(t, d, escapeSpec(img, sandbox.ModeServer))
	// relayDir and relayBin: the node's binary the relay transport shows
	// every container, read-only.
	for _, p := range []string{"/planted", "/bin/planted", "/bin/probe", "/etc/planted", "/etc/hostname", "/proc/sys/kernel/hostname", "/sys/fs/cgroup/planted", relayDir + "/planted", relayBin} {
		got := escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "writefile", "path": p}))
		if !strings.HasPrefix(got, "writefile: error:") {
			t.Errorf("writefile %s: the guest reported %q, want an error", p, got)
		}
	}
	// The relay's socket served this worker's one session: the guest
	// cannot open another into the node.
	if got := escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "dialunix", "path": relaySocket})); !strings.HasPrefix(got, "dialunix: error:") {
		t.Errorf("dial the relay's socket %s from the guest: %q, want an error", relaySocket, got)
	} else {
		t.Logf("dial %s: %s", relaySocket, got)
	}
	if got := escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "writefile", "path": "/tmp/scratch"})); got != "writefile: ok" {
		t.Errorf("writefile /tmp/scratch: %q, want ok", got)
	}
	got := escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "fill", "path": "/tmp/fill", "size": 4 * escapeScratch}))
	m := regexp.MustCompile(`^fill: error after (\d+) bytes: .*no space left on device`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("fill /tmp with %d bytes past a %d-byte scratch: %q, want no space left", 4*escapeScratch, escapeScratch, got)
	}
	if n, _ := strconv.ParseInt(m[1], 10, 64); n > escapeScratch || n < escapeScratch/2 {
		t.Errorf("fill /tmp: wrote %d bytes, want about the scratch size %d", n, escapeScratch)
	}
	t.Logf("fill /tmp: %s", got)
}

// TestEscapeHostFiles checks that the guest sees none of the host's files:
// not its host name, not the test's (a node's) data directory, not the
// source tree, and that its /proc shows its own processes only.
func TestEscapeHostFiles(t *testing.T) {
	cli, img := escapeEnv(t)
	// A token in the node's environment.
	secret := fmt.Sprintf("token-canary-%d", time.Now().UnixNano())
	t.Setenv("ANDROMEDA_TOKEN", secret)
	d, _ := escapeDriver(t, cli, Config{})
	dep := escapeDeploy(t, d, escapeSpec(img, sandbox.ModeServer))
	data := t.TempDir()
	canary := filepath.Join(data, "operator.token")
	if err := os.WriteFile(canary, []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}

	var cat struct{ Data string }
	escapeEmit(t, escapeRun(t, dep, 0, map[string]any{"do": "cat", "path": "/etc/hostname"}), &cat)
	host, _ := os.Hostname()
	if guest := strings.TrimSpace(cat.Data); guest == "" || guest == host {
		t.Errorf("the guest's /etc/hostname is %q, the host's name is %q", guest, host)
	}
	if b, err := os.ReadFile("/etc/hostname"); err == nil && strings.TrimSpace(string(b)) == strings.TrimSpace(cat.Data) {
		t.Errorf("the guest reads the host's /etc/hostname %q", b)
	}

	paths := []string{data, canary, wd, filepath.Dir(wd), "/var/lib/docker", "/root", "/home", "/proc/sysrq-trigger"}
	var stat map[string]string
	escapeEmit(t, escapeRun(t, dep, 0, map[string]any{"do": "stat", "paths": paths}), &stat)
	for _, p := range paths[:len(paths)-1] {
		if !strings.Contains(stat[p], "no such file or directory") {
			t.Errorf("stat %s in the guest: %q, want no such file", p, stat[p])
		}
	}
	if got := escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "writefile", "path": "/proc/sysrq-trigger"})); !strings.HasPrefix(got, "writefile: error:") {
		t.Errorf("write /proc/sysrq-trigger: %q, want an error", got)
	}

	var env struct{ Env, Args []string }
	escapeEmit(t, escapeRun(t, dep, 0, map[string]any{"do": "env"}), &env)
	for _, kv := range append(env.Env, env.Args...) {
		if strings.Contains(kv, secret) || strings.HasPrefix(kv, "ANDROMEDA_") {
			t.Errorf("the guest sees %q", kv)
		}
	}
	t.Logf("guest environment %q, arguments %q", env.Env, env.Args)

	var who struct {
		PID   int
		Init  string
		Procs []string
	}
	escapeEmit(t, escapeRun(t, dep, 0, map[string]any{"do": "whoami"}), &who)
	hostInit, _ := os.ReadFile("/proc/1/cmdline")
	if strings.ReplaceAll(strings.TrimRight(string(hostInit), "\x00"), "\x00", " ") == who.Init {
		t.Errorf("the guest's /proc/1 is the host's init %q", who.Init)
	}
	self, _ := os.ReadFile("/proc/self/comm")
	for _, p := range who.Procs {
		if strings.HasSuffix(p, ": "+strings.TrimSpace(string(self))) || strings.HasSuffix(p, ": dockerd") || strings.HasSuffix(p, ": containerd") {
			t.Errorf("the guest sees the host's process %s", p)
		}
	}
	if len(who.Procs) > 4 {
		t.Errorf("the guest sees %d processes %v, want its own few", len(who.Procs), who.Procs)
	}
	t.Logf("guest pid %d, init %q, processes %v", who.PID, who.Init, who.Procs)
}

// TestEscapePrivileges checks, in both modes, that the engine's socket is
// not inside, that the guest runs as the configured non-root user with no
// capabilities, no new privileges and a seccomp filter, and cannot make a
// device node.
func TestEscapePrivileges(t *testing.T) {
	cli, img := escapeEnv(t)
	d, _ := escapeDriver(t, cli, Config{})
	for _, mode := range []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand} {
		t.Run(string(mode), func(t *testing.T) {
			dep := escapeDeploy(t, d, escapeSpec(img, mode))
			socks := []string{"/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock"}
			var stat map[string]string
			escapeEmit(t, escapeRun(t, dep, 0, map[string]any{"do": "stat", "paths": socks}), &stat)
			for _, p := range socks {
				if !strings.Contains(stat[p], "no such file or directory") {
					t.Errorf("stat %s in the guest: %q, want no such file", p, stat[p])
				}
			}
			got := escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "mknod", "path": "/tmp/null"}))
			if !strings.HasPrefix(got, "mknod: error:") {
				t.Errorf("mknod /tmp/null: %q, want an error", got)
			}
			var who struct {
				UID, GID, EUID int
				Status         []string
			}
			escapeEmit(t, escapeRun(t, dep, 0, map[string]any{"do": "whoami"}), &who)
			if who.UID != 65534 || who.EUID != 65534 || who.GID != 65534 {
				t.Errorf("the guest runs as uid %d euid %d gid %d, want the default user 65534:65534", who.UID, who.EUID, who.GID)
			}
			status := strings.Join(who.Status, "\n")
			for _, want := range []string{"CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
				if !strings.Contains(status, want) {
					t.Errorf("/proc/self/status lacks %q:\n%s", want, status)
				}
			}
			t.Logf("%s: mknod: %s; %s", mode, got, strings.ReplaceAll(status, "\n", "; "))
		})
	}
}

// TestEscapeForkBomb checks that a guest starting processes until refused
// is stopped by Limits.Pids, that the host can still start processes, and
// that Stop removes the bomb's container, its processes with it.
func TestEscapeForkBomb(t *testing.T) {
	cli, img := escapeEnv(t)
	// The whole of a Go crash's standard error (its first line says why),
	// should the guest's runtime be the one refused a thread.
	d, node := escapeDriver(t, cli, Config{Process: process.Config{MaxLog: 256 << 10}})
	spec := escapeSpec(img, sandbox.ModeServer)
	spec.Limits.Pids = 32
	dep := escapeDeploy(t, d, spec)
	r := escapeRun(t, dep, 0, map[string]any{"do": "forkbomb", "size": 1000})
	switch {
	case r.Outcome == sandbox.Crashed && strings.Contains(r.Error, "failed to create new OS thread") && strings.Contains(r.Error, "errno=11"):
		// The limit counts threads: the guest's own Go runtime may be the
		// one refused a thread (EAGAIN) first, and dies of it. The limit
		// held either way.
		t.Logf("fork bomb: the guest's runtime was refused a thread and died: %.200s", r.Error)
	default:
		got := escapeNoop(t, r)
		m := regexp.MustCompile(`^forkbomb: error after (\d+) processes: .*resource temporarily unavailable`).FindStringSubmatch(got)
		if m == nil {
			t.Fatalf("fork bomb under a limit of %d pids: %q, want it refused", spec.Limits.Pids, got)
		}
		if n, _ := strconv.Atoi(m[1]); n >= spec.Limits.Pids {
			t.Errorf("fork bomb: %d processes started under a limit of %d pids (threads included)", n, spec.Limits.Pids)
		}
		t.Logf("fork bomb: %s", got)
	}
	if err := exec.Command("true").Run(); err != nil {
		t.Errorf("the host cannot start a process after the fork bomb: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := dep.Stop(ctx); err != nil {
		t.Errorf("Stop after the fork bomb: %v", err)
	}
	escapeWaitGone(t, cli, node, nil, 5*time.Second)
}

// cutProxy is a unix-socket proxy in front of the engine's socket that a
// test can cut (closing its listener and every connection, as an engine
// that goes away would) and bring back at the same path.
type cutProxy struct {
	path, target string

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]bool
	stalled bool // accept connections and answer nothing, as a hung engine
	// delayCreate holds each container create request this long before
	// passing it on, as a loaded engine would take to answer it.
	delayCreate time.Duration
	held        int // create requests being held
}

// startCutProxy listens at a new socket in a temporary directory and
// forwards every connection to the unix socket target. It is cut at the end
// of the test.
func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "esc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &cutProxy{path: filepath.Join(dir, "engine.sock"), target: target, conns: map[net.Conn]bool{}}
	if err := p.listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.cut)
	return p
}

// listen (again) at p.path.
func (p *cutProxy) listen() error {
	_ = os.Remove(p.path)
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
	return nil
}

// forward copies c to a new connection to the target and back until either
// side ends or the proxy is cut.
func (p *cutProxy) forward(c net.Conn) {
	p.mu.Lock()
	if p.stalled {
		p.conns[c] = true
		p.mu.Unlock()
		return // held open, unanswered, until the proxy is cut
	}
	p.mu.Unlock()
	up, err := net.Dial("unix", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go func() {
		// To the engine: a write holding a create's request line waits
		// first (a request's head is one write of the client).
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				p.mu.Lock()
				delay := p.delayCreate
				p.mu.Unlock()
				hold := delay > 0 && bytes.Contains(buf[:n], []byte("/containers/create"))
				if hold {
					p.mu.Lock()
					p.held++
					p.mu.Unlock()
					time.Sleep(delay)
				}
				_, werr := up.Write(buf[:n])
				if hold {
					p.mu.Lock()
					p.held--
					p.mu.Unlock()
				}
				if werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		if cw, ok := up.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	go pipe(c, up)
	<-done
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// stall closes every connection through the proxy and from then on
// accepts new ones without answering them, as an engine that hangs.
func (p *cutProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// cut closes the listener and every connection through the proxy; a
// stalled proxy forwards again once it listens again.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = false
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// escapeEngineSocket is the unix socket of the engine dockerimg.Client reaches.
func escapeEngineSocket(t *testing.T) string {
	t.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = client.DefaultDockerHost
	}
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		t.Skipf("the engine is at %s, not a unix socket this test can put a proxy in front of", host)
	}
	return path
}

// TestEscapeEngineGone cuts the driver's connection to the engine (a proxy
// in front of the engine's socket) while an invocation runs, with each
// transport. Over the attached streams (attach), the run's protocol goes
// through the engine: the run must end soon with an error that says so,
// not hang or panic. Over the relay's socket (relay), it does not: a run
// in flight may finish, and one past its deadline must still end as a
// timeout at its deadline. With either, an invocation in command mode while
// the engine is away must fail at once with the reason, and once the engine
// is back, Stop and Reap must leave no container of the node behind.
func TestEscapeEngineGone(t *testing.T) {
	cli, img := escapeEnv(t)
	socket := escapeEngineSocket(t)

	t.Run("attach", func(t *testing.T) {
		proxy := startCutProxy(t, socket)
		d, node := escapeDriver(t, cli, Config{Host: "unix://" + proxy.path, Transport: TransportAttach})
		server, command := escapeGoneDeploy(t, d, img, 10*time.Second)
		running := escapeInvoke(server, `{"do":"sleep"}`)
		time.Sleep(300 * time.Millisecond) // the invoke message is in the worker
		proxy.cut()
		r := escapeEnd(t, "a run in server mode when the engine went away", running, 5*time.Second)
		if r.err == nil && (r.exit.Outcome == sandbox.OK || r.exit.Outcome == sandbox.Noop || r.exit.Outcome == sandbox.Timeout) {
			t.Errorf("outcome %s, want an error: the engine went away", r.exit.Outcome)
		}
		escapeGoneCommand(t, command)
		escapeGoneDriver(t, d, img)
		escapeGoneCleanup(t, cli, d, node, proxy, server, command)
	})

	t.Run("relay", func(t *testing.T) {
		proxy := startCutProxy(t, socket)
		d, node := escapeDriver(t, cli, Config{Host: "unix://" + proxy.path})
		if tr, err := d.transport(); tr != TransportRelay {
			t.Fatalf("transport %s (%v), want relay: the test binary calls MaybeRelay", tr, err)
		}
		const timeout = 2 * time.Second
		server, command := escapeGoneDeploy(t, d, img, timeout)
		running := escapeInvoke(server, `{"do":"nap","ms":1000}`)
		time.Sleep(300 * time.Millisecond)
		proxy.cut()
		r := escapeEnd(t, "a run in flight over the relay when the engine went away", running, 3*time.Second)
		if r.err != nil || r.exit.Outcome != sandbox.OK {
			t.Logf("the run in flight did not finish (outcome %s, err %v): the engine is not on its path", r.exit.Outcome, r.err)
		}
		// A run past its deadline ends at it, engine or not.
		r = escapeEnd(t, "a run past its deadline while the engine is away", escapeInvoke(server, `{"do":"sleep"}`), timeout+3*time.Second)
		if r.exit.Outcome != sandbox.Timeout {
			t.Errorf("sleep past a %v timeout while the engine is away: outcome %s (err %v), want timeout", timeout, r.exit.Outcome, r.err)
		}
		escapeGoneCommand(t, command)
		escapeGoneDriver(t, d, img)
		escapeGoneCleanup(t, cli, d, node, proxy, server, command)
	})
}

// escapeGoneDeploy deploys the probe in server mode (warm, answering
// through the driver's engine connection) and in command mode with
// timeout.
func escapeGoneDeploy(t *testing.T, d *Driver, img dockerimg.Image, timeout time.Duration) (server, command sandbox.Deployment) {
	t.Helper()
	spec := escapeSpec(img, sandbox.ModeServer)
	spec.Limits.Timeout = timeout
	server = escapeDeploy(t, d, spec)
	spec.Mode = sandbox.ModeCommand
	command = escapeDeploy(t, d, spec)
	if got := escapeNoop(t, escapeRun(t, server, 0, map[string]any{"do": "noop", "reason": "warm"})); got != "warm" {
		t.Fatalf("warm: %q", got)
	}
	return server, command
}

// escapeResult is how an invocation started by escapeInvoke ended.
type escapeResult struct {
	exit sandbox.Exit
	err  error
	took time.Duration
}

// escapeInvoke starts one invocation of dep with the probe message msg and
// a 30 s deadline, and reports its end on the returned channel.
func escapeInvoke(dep sandbox.Deployment, msg string) <-chan escapeResult {
	ch := make(chan escapeResult, 1)
	go func() {
		in, _ := json.Marshal(contract.Input{RunID: fmt.Sprintf("run-engine-gone-%d", time.Now().UnixNano()), Service: "escape",
			Trigger: contract.Trigger{Kind: "manual"}, Message: json.RawMessage(msg), State: map[string]json.RawMessage{}, Config: map[string]any{}})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		exit, err := dep.Invoke(ctx, in)
		ch <- escapeResult{exit, err, time.Since(start)}
	}()
	return ch
}

// escapeEnd waits for the run on ch, failing t unless it ends within bound
// and, when it did not end well, an error or its detail says why.
func escapeEnd(t *testing.T, what string, ch <-chan escapeResult, bound time.Duration) escapeResult {
	t.Helper()
	select {
	case r := <-ch:
		t.Logf("%s: ended after %v: outcome %q, err %v, detail %q", what, r.took, r.exit.Outcome, r.err, r.exit.Detail)
		why := r.exit.Detail
		if r.err != nil {
			why = r.err.Error()
		}
		if (r.err != nil || r.exit.Outcome != sandbox.OK) && strings.TrimSpace(why) == "" {
			t.Errorf("%s: no error and no detail say why the run ended", what)
		}
		return r
	case <-time.After(bound):
		t.Fatalf("%s: still running %v later", what, bound)
		return escapeResult{}
	}
}

// escapeGoneCommand checks that an invocation in command mode while the
// engine is away fails at once, naming the engine.
func escapeGoneCommand(t *testing.T, command sandbox.Deployment) {
	t.Helper()
	r := escapeEnd(t, "a run in command mode while the engine is away", escapeInvoke(command, `{"do":"noop","reason":"ran"}`), 5*time.Second)
	if r.err == nil && r.exit.Outcome != sandbox.Error {
		t.Errorf("a run in command mode while the engine is away: outcome %s, want an error", r.exit.Outcome)
	}
	if r.err != nil && !strings.Contains(r.err.Error(), "docker API") && !strings.Contains(r.err.Error(), "engine") {
		t.Errorf("the error %q does not say the engine is unreachable", r.err)
	}
}

// escapeGoneDriver checks that Deploy and Reap fail soon, with an error,
// while the engine is away.
func escapeGoneDriver(t *testing.T, d *Driver, img dockerimg.Image) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	dep, err := d.Deploy(ctx, escapeSpec(img, sandbox.ModeServer))
	if err == nil {
		_ = dep.Stop(ctx)
		t.Errorf("Deploy while the engine is away: no error")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Deploy while the engine is away took %v", took)
	}
	t.Logf("Deploy while the engine is away: %v", err)
	start = time.Now()
	removed, err := d.Reap(ctx)
	if err == nil {
		t.Errorf("Reap while the engine is away: no error (removed %v)", removed)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Reap while the engine is away took %v", took)
	}
	t.Logf("Reap while the engine is away: %v", err)
}

// escapeGoneCleanup brings the engine back and checks that the server
// deployment serves again within 10 s, and that Stop of every deployment,
// then Reap, leave no container of node.
func escapeGoneCleanup(t *testing.T, cli *client.Client, d *Driver, node string, proxy *cutProxy, server sandbox.Deployment, deps ...sandbox.Deployment) {
	t.Helper()
	if err := proxy.listen(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		r := escapeEnd(t, "a run in server mode once the engine is back", escapeInvoke(server, `{"do":"noop","reason":"back"}`), 15*time.Second)
		if r.err == nil && r.exit.Outcome == sandbox.OK {
			t.Logf("the server deployment serves again %v after the engine came back", time.Since(start))
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("the server deployment does not serve %v after the engine came back", time.Since(start))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start = time.Now()
	deps = append(deps, server)
	for _, dep := range deps {
		if err := dep.Stop(ctx); err != nil {
			t.Logf("Stop after the engine came back: %v", err)
		}
	}
	left := escapeContainers(t, cli, node)
	t.Logf("after Stop (%v): %d containers of the node left %v", time.Since(start), len(left), left)
	removed, err := d.Reap(ctx)
	if err != nil {
		t.Errorf("Reap after the engine came back: %v", err)
	}
	if len(left) > 0 {
		t.Logf("Reap removed %v", removed)
	}
	if left := escapeContainers(t, cli, node); len(left) != 0 {
		t.Errorf("after Stop and Reap, the node's containers are still there: %v", left)
	}
	if ctx.Err() != nil {
		t.Errorf("Stop and Reap took longer than 20 s")
	}
}

// TestEscapeVolumes checks the one place outside /tmp a guest may write: a
// volume, whose directory the node makes as makeVolumes does (mode 0700,
// the node's), is writable by the container's user at its path, and its
// files land in that directory. A volume at the relay's directory, which
// the manifest's reserved paths do not name, must be refused with an
// error naming the volume, and the engine must not have made the relay's
// mount points in the host directory.
func TestEscapeVolumes(t *testing.T) {
	cli, img := escapeEnv(t)
	d, _ := escapeDriver(t, cli, Config{})

	t.Run("writable", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		spec := escapeSpec(img, sandbox.ModeServer)
		spec.Volumes = []sandbox.Volume{{Name: "data", Dir: dir, Path: "/data"}}
		dep := escapeDeploy(t, d, spec)
		got := escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "writefile", "path": "/data/written"}))
		if got != "writefile: ok" {
			t.Errorf("write to the volume at /data (host directory mode 0700, uid %d): %q, want ok", os.Geteuid(), got)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "written")); err != nil || string(b) != "x" {
			t.Errorf("the guest's file in the volume's host directory: %q, %v", b, err)
		}
	})

	t.Run("at-relay", func(t *testing.T) {
		dir := t.TempDir()
		spec := escapeSpec(img, sandbox.ModeServer)
		spec.Volumes = []sandbox.Volume{{Name: "relay", Dir: dir, Path: relayDir}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dep, err := d.Deploy(ctx, spec)
		if err == nil {
			_ = dep.Stop(ctx)
			t.Errorf("Deploy with a volume at %s: no error, want one naming volumes[0] and the path", relayDir)
		} else if !strings.Contains(err.Error(), "volumes[0]") {
			t.Errorf("Deploy with a volume at %s: %v, want an error naming volumes[0]", relayDir, err)
		}
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if len(names) > 0 {
			t.Errorf("the volume's host directory holds %v after the deploy: the engine made the relay's mount points in it", names)
		}
	})
}

// TestStopWaitsForCutCreate: a call whose deadline ends while the engine
// is still creating its container leaves that create running, and the
// container it makes is removed in the background; Stop returns only once
// that is done, so no container of a stopped deployment is left behind
// it. The engine's creates are held 1.5 s by a proxy, as on a loaded
// engine.
func TestStopWaitsForCutCreate(t *testing.T) {
	dir, entry := archiveGuest(t, lang.Python)
	proxy := startCutProxy(t, escapeEngineSocket(t))
	cfg := archiveConfig(t, lang.Python)
	cfg.Host = "unix://" + proxy.path
	d := newDriver(t, cfg)
	dep := deploy(t, d, sandbox.Spec{Service: "cut-create", Dir: dir, Entry: entry, Language: lang.Python, Mode: sandbox.ModeCommand})
	proxy.mu.Lock()
	proxy.delayCreate = 1500 * time.Millisecond
	proxy.mu.Unlock()
	r, err := sandbox.CallRaw(context.Background(), dep, input(t, "", map[string]any{"do": "spin"}), 100*time.Millisecond)
	if err != nil || r.Outcome != sandbox.Timeout {
		t.Fatalf("outcome %s, error %v, want a timeout", r.Outcome, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := dep.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	proxy.mu.Lock()
	held := proxy.held
	proxy.mu.Unlock()
	if held > 0 {
		t.Errorf("Stop returned while the engine had yet to receive %d create(s) of the deployment", held)
	}
	if left := containers(t, d, LabelService+"=cut-create"); len(left) > 0 {
		t.Errorf("containers after Stop: %v", left)
	}
}

// TestEscapeEngineGoneErrors checks what the errors of Deploy and Reap say
// while the engine is away: the engine is unreachable (ErrEngine), not
// that the image was refused (ErrImage), which would send the operator to
// the wrong place.
func TestEscapeEngineGoneErrors(t *testing.T) {
	cli, img := escapeEnv(t)
	proxy := startCutProxy(t, escapeEngineSocket(t))
	d, _ := escapeDriver(t, cli, Config{Host: "unix://" + proxy.path})
	if err := d.Test(context.Background()); err != nil {
		t.Fatalf("Test through the proxy: %v", err)
	}
	proxy.cut()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, mode := range []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand} {
		dep, err := d.Deploy(ctx, escapeSpec(img, mode))
		if err == nil {
			_ = dep.Stop(ctx)
			t.Fatalf("Deploy in %s mode while the engine is away: no error", mode)
		}
		if !errors.Is(err, ErrEngine) || errors.Is(err, ErrImage) {
			t.Errorf("Deploy in %s mode while the engine is away: %v; want an error wrapping ErrEngine, not ErrImage (is ErrEngine %v, is ErrImage %v)",
				mode, err, errors.Is(err, ErrEngine), errors.Is(err, ErrImage))
		}
	}
	if _, err := d.Reap(ctx); !errors.Is(err, ErrEngine) {
		t.Errorf("Reap while the engine is away: %v, want an error wrapping ErrEngine", err)
	}
}

// TestEscapeEngineGoneStop checks that Stop keeps to its context (and
// Process.KillWait past it) while the engine cannot be reached: the node
// gives a deployment 5 s to stop, and a Stop that waits on the engine
// holds the node's shutdown. cut: the engine
// refuses connections, and the worker ran past its deadline ignoring the
// cancel (its container could not be killed). hung: the engine accepts
// connections and answers nothing, and the worker is idle. Once the engine
// is back, Stop must have returned and Reap must leave nothing behind.
func TestEscapeEngineGoneStop(t *testing.T) {
	cli, img := escapeEnv(t)
	socket := escapeEngineSocket(t)
	for _, how := range []string{"cut", "hung"} {
		t.Run(how, func(t *testing.T) {
			proxy := startCutProxy(t, socket)
			d, node := escapeDriver(t, cli, Config{Host: "unix://" + proxy.path})
			spec := escapeSpec(img, sandbox.ModeServer)
			spec.Limits.Timeout = time.Second
			dep, err := d.Deploy(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			escapeNoop(t, escapeRun(t, dep, 0, map[string]any{"do": "noop", "reason": "warm"}))
			running := escapeContainers(t, cli, node)
			if how == "cut" {
				proxy.cut()
				r := escapeEnd(t, "sleep past the deadline while the engine is away", escapeInvoke(dep, `{"do":"sleep"}`), 5*time.Second)
				if r.exit.Outcome != sandbox.Timeout {
					t.Errorf("sleep: outcome %s, want timeout", r.exit.Outcome)
				}
			} else {
				proxy.stall()
			}
			// Stop's engine calls may run KillWait past its context.
			const grace, slack = 3 * time.Second, DefaultKillWait + time.Second
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			start := time.Now()
			// stopped is closed when Stop returned, with its error in stopErr:
			// both selects below see it.
			stopped := make(chan struct{})
			var stopErr error
			go func() { stopErr = dep.Stop(ctx); close(stopped) }()
			select {
			case <-stopped:
				t.Logf("Stop(%v) while the engine is %s: %v after %v", grace, how, stopErr, time.Since(start))
			case <-time.After(grace + slack):
				t.Errorf("Stop(%v) while the engine is %s: still blocked after %v", grace, how, time.Since(start))
			}
			// The engine comes back.
			proxy.cut()
			if err := proxy.listen(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-stopped:
			case <-time.After(5 * time.Second):
				t.Errorf("Stop still blocked 5 s after the engine came back (%v after it was called)", time.Since(start))
				// Unblock it: kill the worker's container past the driver.
				for _, c := range running {
					_, _ = cli.ContainerKill(context.Background(), c.ID, client.ContainerKillOptions{Signal: "KILL"})
				}
				select {
				case <-stopped:
				case <-time.After(10 * time.Second):
					t.Errorf("Stop still blocked after its worker's container was killed")
				}
			}
			removed, err := d.Reap(context.Background())
			if err != nil {
				t.Errorf("Reap once the engine is back: %v", err)
			}
			if left := escapeContainers(t, cli, node); len(left) != 0 {
				t.Errorf("after Stop and Reap (removed %v), the node's containers are still there: %v", removed, left)
			}
		})
	}
}
