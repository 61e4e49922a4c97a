package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
)

// lockedBuffer is a bytes.Buffer safe to write from serve and read from
// the benchmark.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// BenchmarkServeDemoWarm times `serve --demo` from its start until /readyz
// answers 200 and the demo services are listed, each iteration on a fresh
// data dir but with the demo's build cache (and the compiled-module cache,
// both under the config's cache dir) warm from a first start. Beside the
// time per start (p50-ms and p90-ms over the iterations) it reports the
// mean of what the node and serve log as each phase's own time: the node's
// opening (bus, store), each driver's self-test, the demo's preparation
// (its build or its cache check) and the demo's deploys. Phases may
// overlap, so they need not add up.
//
//	go test ./cmd/andromeda -run NONE -bench ServeDemoWarm -benchtime 5x
func BenchmarkServeDemoWarm(b *testing.B) {
	if _, err := exec.LookPath("go"); err != nil {
		b.Skip("the go toolchain is needed to build the demo services")
	}
	root := b.TempDir()
	cfg := filepath.Join(root, "andromeda.yaml")
	cache := filepath.Join(root, "cache")
	// docker: its self-test starts a container at every start.
	os.WriteFile(cfg, []byte(fmt.Sprintf("docker: {enabled: false}\ncache: %q\nlog: {format: json}\n", cache)), 0o644)
	// The first start builds the demo and fills the caches.
	want, _ := serveDemoOnce(b, cfg, filepath.Join(root, "warm"), 0)
	if want == 0 {
		b.Fatal("the warm-up start listed no demo service")
	}
	var took []time.Duration
	phases := map[string]float64{}
	b.ResetTimer()
	for i := range b.N {
		_, r := serveDemoOnce(b, cfg, filepath.Join(root, fmt.Sprintf("data-%d", i)), want)
		took = append(took, r.took)
		for k, v := range r.phases {
			phases[k] += v
		}
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "p50-ms")
	b.ReportMetric(float64(took[len(took)*9/10])/float64(time.Millisecond), "p90-ms")
	for k, v := range phases {
		b.ReportMetric(v/float64(b.N), k+"-ms")
	}
}

// startTiming is one start's time to ready and its phases' own times.
type startTiming struct {
	took   time.Duration
	phases map[string]float64
}

// serveDemoOnce runs serve --demo on data until it is ready with want demo
// services listed (any number when want is 0), then stops it. It returns
// how many services were listed.
func serveDemoOnce(b *testing.B, cfg, data string, want int) (int, startTiming) {
	b.Helper()
	var out, errb lockedBuffer
	e := &cli{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- e.run(ctx, []string{"serve", "--demo", "--config", cfg, "--data", data, "--listen", "127.0.0.1:0"})
	}()
	fail := func(format string, args ...any) {
		cancel()
		<-done
		b.Fatalf(format+"\nstdout:\n%s\nstderr:\n%s", append(args, out.String(), errb.String())...)
	}
	deadline := time.Now().Add(5 * time.Minute)
	var (
		base   string
		client *api.Client
		n      int
		ready  bool
		hc     = &http.Client{Timeout: 5 * time.Second}
	)
	for {
		if time.Now().After(deadline) {
			fail("serve --demo not ready in 5 minutes")
		}
		select {
		case err := <-done:
			done <- err
			fail("serve returned before it was ready: %v", err)
		default:
		}
		if base == "" {
			for line := range strings.Lines(out.String()) {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on"); ok {
					base = strings.TrimSpace(rest)
				}
			}
		}
		if base != "" && client == nil {
			if tok, err := node.OperatorToken(data); err == nil {
				client = api.NewClient(base, tok)
			}
		}
		if client != nil {
			if !ready {
				if resp, err := hc.Get(base + "/readyz"); err == nil {
					resp.Body.Close()
					ready = resp.StatusCode == http.StatusOK
				}
			}
			if ready {
				if svcs, err := client.Services(ctx); err == nil {
					n = len(svcs)
					if n > 0 && (want == 0 || n >= want) && (want > 0 || strings.Contains(out.String(), "\nTry: ")) {
						break
					}
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := startTiming{took: time.Since(start), phases: logPhases(errb.String())}
	cancel()
	if err := <-done; err != nil {
		b.Fatalf("serve --demo stopped with %v\n%s", err, out.String())
	}
	return n, r
}

// logPhases reads the took_ms of the log lines that time a phase of the
// start: node opened, each driver's self-test, demo prepared, and the
// demo's start services.
func logPhases(log string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l struct {
			Msg    string   `json:"msg"`
			Took   *float64 `json:"took_ms"`
			Driver string   `json:"driver"`
			List   string   `json:"list"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Took == nil {
			continue
		}
		switch {
		case l.Msg == "node opened":
			out["open"] = *l.Took
		case (l.Msg == "driver ready" || l.Msg == "driver disabled") && l.Driver != "":
			out["selftest-"+l.Driver] = *l.Took
		case l.Msg == "demo prepared":
			out["demo-build"] = *l.Took
		case l.Msg == "start services done" && l.List == "demo":
			out["demo-deploy"] = *l.Took
		case l.Msg == "node started":
			out["node-start"] = *l.Took
		}
	}
	return out
}
