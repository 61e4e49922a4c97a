package docker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/moby/moby/client"
)

// TestAttachRoundTrip measures the warm round trip of a trivial invoke over
// a server-mode container's attached streams, and checks the answers.
func TestTransportRoundTrip(t *testing.T) {
	for _, tr := range []string{TransportAttach, TransportRelay} {
		t.Run(tr, func(t *testing.T) { roundTrips(t, tr) })
	}
}

func roundTrips(t *testing.T, transport string) {
	cfg := testConfig()
	cfg.Transport = transport
	d := newDriver(t, cfg)
	img := guestImage(t, d).ID
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := containerSpec{name: d.newName("rtt"), image: img, entrypoint: []string{"/bin/guest"}, labels: d.labels(RoleWorker, "rtt", "", ""), limits: d.limits(sandbox.Limits{})}
	p, err := d.startContainer(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(time.Second)
	defer p.Kill()
	var stderr strings.Builder
	stderrDone := make(chan struct{})
	go func() { io.Copy(&stderr, p.Stderr()); close(stderrDone) }()
	defer func() {
		if t.Failed() {
			p.Kill()
			<-stderrDone
			in, _ := p.cli.ContainerInspect(context.Background(), p.id, client.ContainerInspectOptions{})
			t.Logf("stderr: %.300s; %+v; %s %q", stderr.String(), p.Wait(), in.Container.Path, in.Container.Args)
		}
	}()
	br := bufio.NewReader(p.Stdout())
	if _, err := io.WriteString(p.Stdin(), `{"type":"init","id":"init","protocol":1,"service":"rtt","modules":[{"id":"main"}],"config":{},"max_line":8388608,"max_in_flight":1}`+"\n"); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, `"ready"`) {
		t.Fatalf("ready = %q, %v", line, err)
	}
	const n = 2000
	var rtts []time.Duration
	for i := range n {
		msg := fmt.Sprintf(`{"type":"invoke","id":"%d","input":{"run_id":"r","service":"rtt","trigger":{"kind":"manual"},"message":{"do":"echo","value":%d},"state":{},"config":{}}}`+"\n", i, i)
		start := time.Now()
		if _, err := io.WriteString(p.Stdin(), msg); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		rtts = append(rtts, time.Since(start))
		if err != nil || !strings.Contains(line, `"result"`) {
			t.Fatalf("invoke %d: %q, %v", i, line, err)
		}
	}
	slices.Sort(rtts)
	t.Logf("%s round trip over %d invokes: p50 %v, p90 %v, p99 %v", transport, n, rtts[n/2], rtts[n*9/10], rtts[n*99/100])
}

// TestOOMKilled: a container killed at its memory limit ends with
// OOMKilled, and its cgroup's OOM count was caught before the engine
// removed the cgroup (cgroup v1: the eventfd watch).
func TestOOMKilled(t *testing.T) {
	d := newDriver(t, testConfig())
	img := guestImage(t, d).ID
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := containerSpec{name: d.newName("oom"), image: img, entrypoint: []string{"/bin/guest"}, labels: d.labels(RoleWorker, "oom", "", ""), limits: d.limits(sandbox.Limits{Memory: 32 << 20})}
	p, err := d.startContainer(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(time.Second)
	go io.Copy(io.Discard, p.Stderr())
	go io.Copy(io.Discard, p.Stdout())
	io.WriteString(p.Stdin(), `{"type":"init","id":"init","protocol":1,"service":"oom","modules":[{"id":"main"}],"config":{},"max_line":8388608,"max_in_flight":1}`+"\n")
	io.WriteString(p.Stdin(), `{"type":"invoke","id":"1","input":{"run_id":"r","service":"oom","trigger":{"kind":"manual"},"message":{"do":"balloon"},"state":{},"config":{}}}`+"\n")
	st := p.Wait()
	if !st.OOMKilled {
		t.Errorf("Wait() = %+v, want OOMKilled", st)
	}
	if p.cg == nil {
		t.Skip("no cgroup found for the container")
	}
	if p.cg.memory != "" && p.cg.oomKills() == 0 {
		t.Errorf("the cgroup's OOM kills were not caught before its removal")
	}
}

// TestEngineStats: without the container's cgroup (a remote engine), CPU
// time and memory come from the engine's stats API.
func TestEngineStats(t *testing.T) {
	d := newDriver(t, testConfig())
	img := guestImage(t, d).ID
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := containerSpec{name: d.newName("stats"), image: img, entrypoint: []string{"/bin/guest"}, labels: d.labels(RoleWorker, "stats", "", ""), limits: d.limits(sandbox.Limits{})}
	p, err := d.startContainer(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(time.Second)
	defer p.Kill()
	if p.cg == nil {
		t.Fatal("the container's cgroup was not found on this host")
	}
	go io.Copy(io.Discard, p.Stderr())
	br := bufio.NewReader(p.Stdout())
	io.WriteString(p.Stdin(), `{"type":"init","id":"init","protocol":1,"service":"stats","modules":[{"id":"main"}],"config":{},"max_line":8388608,"max_in_flight":1}`+"\n")
	io.WriteString(p.Stdin(), `{"type":"invoke","id":"1","input":{"run_id":"r","service":"stats","trigger":{"kind":"manual"},"message":{"do":"alloc","size":8388608},"state":{},"config":{}}}`+"\n")
	for range 2 {
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	cgCPU, cgPeak := p.CPUTime(), p.PeakMemory()
	p.cg = nil
	cpu, peak := p.CPUTime(), p.PeakMemory()
	if cpu <= 0 || peak <= 0 {
		t.Errorf("from the engine's stats: CPU %v, peak memory %d; want both (the cgroup said %v, %d)", cpu, peak, cgCPU, cgPeak)
	}
	t.Logf("cgroup: CPU %v, peak %d; engine stats: CPU %v, peak %d", cgCPU, cgPeak, cpu, peak)
}
