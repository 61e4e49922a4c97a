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
