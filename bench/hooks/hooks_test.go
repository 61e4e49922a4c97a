package hooks

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/node"
)

var (
	duration = flag.Duration("wrk.duration", 10*time.Second, "how long wrk loads each target at each connection count")
	conns    = flag.String("wrk.conns", "1,16,64", "the connection counts, comma-separated")
)

func connCounts() []int {
	var out []int
	for _, f := range strings.Split(*conns, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// manifest is the benchmarked service: node/testdata/hook's guest on one
// open webhook, its concurrency above the most connections.
const manifest = `name: bench-hook
version: 1.0.0
runtime: {driver: wasm, language: go, entry: main.wasm}
mode: server
triggers:
  - {kind: http, path: /hooks/bench, auth: none}
resources: {memory: 16Mi, timeout: 5s, concurrency: 128}
capabilities: {network: none}
`

// body makes the guest answer 200 with a two-byte body.
const body = `{"http": {"status": 200, "body": "ok"}}`

// result is what wrk measured.
type result struct {
	rps      float64
	p50, p99 time.Duration
	requests int
	bad      int // non-2xx answers and socket errors
}

func BenchmarkWebhook(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed (apt-get install wrk)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		b.Skip("the go toolchain is needed to build the wasm guest")
	}
	ctx := context.Background()
	hookURL := startNode(b, ctx)
	bareURL := startBare(b)
	script := filepath.Join(b.TempDir(), "post.lua")
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", body)
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		b.Fatal(err)
	}
	var table []string
	for _, conns := range connCounts() {
		// A warm-up at this many connections, so that as many reactor
		// instances as it keeps busy are up before the measure.
		if _, err := load(wrk, script, hookURL, conns, 3*time.Second); err != nil {
			b.Fatal(err)
		}
		var got [2]result
		for i, target := range []struct{ name, url string }{{"webhook", hookURL}, {"bare", bareURL}} {
			b.Run(fmt.Sprintf("%s/conns=%d", target.name, conns), func(b *testing.B) {
				for b.Loop() {
					r, err := load(wrk, script, target.url, conns, *duration)
					if err != nil {
						b.Fatal(err)
					}
					if r.bad > 0 {
						b.Errorf("%d of %d answers were not 2xx", r.bad, r.requests)
					}
					got[i] = r
				}
				b.ReportMetric(got[i].rps, "req/s")
				b.ReportMetric(float64(got[i].p50.Microseconds()), "p50-µs")
				b.ReportMetric(float64(got[i].p99.Microseconds()), "p99-µs")
			})
		}
		table = append(table, fmt.Sprintf("| %d | %.0f | %s | %s | %.0f | %s | %s | %.0f%% |", conns,
			got[0].rps, got[0].p50, got[0].p99, got[1].rps, got[1].p50, got[1].p99, 100*got[0].rps/max(got[1].rps, 1)))
	}
	fmt.Printf("\nwebhook → warm wasm reactor → run recorded → answered, beside a bare net/http handler (wrk, %s per cell)\n\n", *duration)
	fmt.Println("| connections | webhook runs/s | p50 | p99 | bare req/s | p50 | p99 | webhook/bare |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, row := range table {
		fmt.Println(row)
	}
}

// startNode starts a node with the benchmarked service and returns its
// webhook's URL.
func startNode(b *testing.B, ctx context.Context) string {
	cfg := node.DefaultConfig()
	cfg.Data, cfg.Listen, cfg.Name = b.TempDir(), "127.0.0.1:0", "bench"
	cfg.HTTP.MaxConnsPerIP = 1024
	cfg.HTTP.MaxConns = 1024
	cfg.Policy.Limits.Concurrency.Max = 128 // above the most connections: no request is skipped
	cfg.Wasm.MemoryBudget = "4Gi"           // 128 instances of 16 MiB reserve 2 GiB
	n, err := node.New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(manifest), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := gobuild.Wasm(ctx, filepath.Join("..", "..", "node", "testdata", "hook"), filepath.Join(dir, "main.wasm"), gobuild.Reactor); err != nil {
		b.Fatal(err)
	}
	tgz, err := archive.Pack(dir)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := node.OperatorToken(cfg.Data)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := api.NewClient(n.Addr(), tok).Submit(ctx, tgz); err != nil {
		b.Fatal(err)
	}
	url := "http://" + n.HooksAddr() + "/hooks/bench"
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Andromeda-Run") == "" {
		b.Fatalf("webhook = %d, want 200 naming its run", resp.StatusCode)
	}
	return url
}

// startBare serves a handler doing no work and returns its URL.
func startBare(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	})}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

var (
	rpsRE     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	latencyRE = regexp.MustCompile(`^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$`)
	totalRE   = regexp.MustCompile(`(\d+) requests in`)
	non2xxRE  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	errorsRE  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// load runs wrk against url and reads its report.
func load(wrk, script, url string, conns int, d time.Duration) (result, error) {
	threads := min(conns, 2)
	cmd := exec.Command(wrk, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", d.String(), "--latency", "-s", script, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	var r result
	if m := rpsRE.FindSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	} else {
		return r, fmt.Errorf("wrk printed no rate: %s", out)
	}
	if m := totalRE.FindSubmatch(out); m != nil {
		r.requests, _ = strconv.Atoi(string(m[1]))
	}
	if m := non2xxRE.FindSubmatch(out); m != nil {
		n, _ := strconv.Atoi(string(m[1]))
		r.bad += n
	}
	if m := errorsRE.FindSubmatch(out); m != nil {
		for _, g := range m[1:] {
			n, _ := strconv.Atoi(string(g))
			r.bad += n
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := latencyRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit)).Round(time.Microsecond)
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	return r, nil
}
