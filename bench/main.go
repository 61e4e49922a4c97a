// Command bench measures Andromeda beside its peers, in one run, on the
// same payload (a 100-byte JSON echo): the wasm driver beside bare wazero
// (the floor) and Extism's Go SDK; the process driver's exec, Node.js and
// Python workers beside HashiCorp go-plugin (net/rpc and gRPC) and a bare
// pipe round trip; a manual fire over HTTP, a webhook and an event beside a
// bare Go HTTP server; and the same at 64 connections for throughput.
//
//	cd bench && go run .            # about 3 s per row
//	cd bench && go run . -short     # a smoke run: every row, a few calls
//	cd bench && go run . -write     # also rewrite BENCHMARKS.md's table
//
// It is a module of its own, so that the peers never enter the runner's
// module graph. The process rows need root (the driver's sandbox), the
// go-plugin and webhook rows the go toolchain; a row that cannot run says
// why in its note and the run goes on.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox/process"
)

var (
	short        = flag.Bool("short", false, "a smoke run: every row, a few calls each")
	duration     = flag.Duration("d", 3*time.Second, "how long each row is measured")
	only         = flag.String("run", "", "measure only the rows whose name matches this regular expression")
	write        = flag.Bool("write", false, "rewrite the generated table in ../BENCHMARKS.md")
	conns        = flag.Int("conns", 64, "connections of the throughput rows")
	cronServices = flag.Int("cron", 200, "services of the cron row, each ticking every second")
	cpuProfile   = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	cronProfile  = flag.String("cronprofile", "", "write a CPU profile of the cron row's measured window to this file")
)

// input is the 100-byte contract input every echo row sends.
var input = func() []byte {
	const head, tail = `{"run_id":"bench-1","service":"bench","trigger":{"kind":"manual"},"message":{"do":"echo","data":"`, `"}}`
	return []byte(head + strings.Repeat("x", 100-len(head)-len(tail)) + tail)
}()

// kind says what a row is to the comparison.
type kind string

const (
	andromeda kind = "andromeda"
	peer      kind = "peer"
	floor     kind = "floor"
)

// row is one measured thing. setup readies it and returns the call to
// time (safe for concurrent use when conc > 1) and what undoes the setup.
type row struct {
	group string
	name  string
	kind  kind
	conc  int // callers at once; 0 or 1: one
	setup func(ctx context.Context, e *env) (call func() error, stop func(), err error)
	// measure, when set, measures the row itself instead of timing
	// calls of setup's: it returns the latencies, the rate and a note.
	measure func(ctx context.Context, e *env) (lat []time.Duration, ops float64, note string, err error)
}

// result is a measured row.
type result struct {
	row
	n        int
	p50, p99 time.Duration
	ops      float64
	note     string // why it did not run, or what to know
}

// env is what rows share: a scratch directory, built binaries, a logger.
type env struct {
	dir string
	log *slog.Logger

	mu    sync.Mutex
	built map[string]builtBin
}

type builtBin struct {
	path string
	err  error
}

func main() {
	process.MaybeInit() // the process driver re-executes this binary as its sandbox init
	flag.Parse()
	if *short {
		*duration = 200 * time.Millisecond
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["cron"] {
			*cronServices = 20
		}
	}
	var match *regexp.Regexp
	if *only != "" {
		var err error
		if match, err = regexp.Compile(*only); err != nil {
			fmt.Fprintln(os.Stderr, "-run:", err)
			os.Exit(2)
		}
	}
	dir, err := os.MkdirTemp("", "andromeda-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	e := &env{dir: dir, log: slog.New(slog.NewTextHandler(io.Discard, nil)), built: map[string]builtBin{}}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()

	var results []result
	failed := false
	for _, r := range rows() {
		if match != nil && !match.MatchString(r.group+"/"+r.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "%-44s ", r.group+"/"+r.name)
		res := measure(ctx, e, r)
		if res.n == 0 {
			fmt.Fprintf(os.Stderr, "not run: %s\n", res.note)
			if strictCI() {
				failed = true
			}
		} else {
			fmt.Fprintf(os.Stderr, "p50 %v p99 %v %.0f/s\n", res.p50, res.p99, res.ops)
		}
		results = append(results, res)
	}
	if shared.n != nil {
		shared.n.Close()
	}
	table := render(results)
	fmt.Println()
	fmt.Print(table)
	if *write {
		if err := writeBenchmarks("../BENCHMARKS.md", table); err != nil {
			fmt.Fprintln(os.Stderr, "-write:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "wrote ../BENCHMARKS.md")
	}
	if failed {
		fmt.Fprintln(os.Stderr, "ANDROMEDA_CI_STRICT=1: every row must run")
		os.Exit(1)
	}
}

// strictCI is set where no row may be left out (CI).
func strictCI() bool { return os.Getenv("ANDROMEDA_CI_STRICT") == "1" }

// measure sets a row up, warms it, calls it for the duration from conc
// callers, and tears it down.
func measure(ctx context.Context, e *env, r row) (res result) {
	res.row = r
	defer func() {
		if p := recover(); p != nil {
			res.n, res.note = 0, fmt.Sprint("panic: ", p)
		}
	}()
	if r.measure != nil {
		lat, ops, note, err := r.measure(ctx, e)
		if err != nil {
			res.note = err.Error()
			return res
		}
		res.note = note
		return summarize(res, lat, ops)
	}
	call, stop, err := r.setup(ctx, e)
	if err != nil {
		res.note = err.Error()
		return res
	}
	defer stop()
	warm := time.Now()
	for i := 0; i < 200 && time.Since(warm) < 500*time.Millisecond; i++ {
		if err := call(); err != nil {
			res.note = "warm-up: " + err.Error()
			return res
		}
	}
	conc := max(r.conc, 1)
	lat := make([][]time.Duration, conc)
	errs := make([]error, conc)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(*duration)
	for c := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := call(); err != nil {
					errs[c] = err
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			res.note = err.Error()
			return res
		}
	}
	all := slices.Concat(lat...)
	return summarize(res, all, float64(len(all))/elapsed.Seconds())
}

// summarize fills res's figures from the latencies.
func summarize(res result, lat []time.Duration, ops float64) result {
	slices.Sort(lat)
	res.n = len(lat)
	if res.n == 0 {
		if res.note == "" {
			res.note = "no call finished in time"
		}
		return res
	}
	res.p50 = lat[len(lat)/2]
	res.p99 = lat[min(len(lat)*99/100, len(lat)-1)]
	res.ops = ops
	return res
}

// render prints the results as one markdown table, grouped, with each
// row's p50 over its group's best peer and over its group's floor.
func render(results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %d CPUs, %s/%s, %s, %s per row, load average %s at the end%s\n\n", cpuModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), *duration, loadAverage(), map[bool]string{true: " (-short: a smoke run, not figures)"}[*short])
	b.WriteString("| group | row | kind | p50 | p99 | ops/s | × best peer | × floor | note |\n")
	b.WriteString("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, g := range groups(results) {
		var best, fl time.Duration
		for _, r := range results {
			if r.group != g || r.n == 0 {
				continue
			}
			switch r.kind {
			case peer:
				if best == 0 || r.p50 < best {
					best = r.p50
				}
			case floor:
				fl = r.p50
			}
		}
		for _, r := range results {
			if r.group != g {
				continue
			}
			if r.n == 0 {
				fmt.Fprintf(&b, "| %s | %s | %s | — | — | — | — | — | not run: %s |\n", r.group, r.name, r.kind, r.note)
				continue
			}
			ratio := func(base time.Duration) string {
				if base == 0 {
					return "—"
				}
				return fmt.Sprintf("%.2f", float64(r.p50)/float64(base))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.0f | %s | %s | %s |\n", r.group, r.name, r.kind, us(r.p50), us(r.p99), r.ops, ratio(best), ratio(fl), r.note)
		}
	}
	return b.String()
}

// groups lists the results' groups in their first order.
func groups(results []result) []string {
	var gs []string
	for _, r := range results {
		if !slices.Contains(gs, r.group) {
			gs = append(gs, r.group)
		}
	}
	return gs
}

// us prints a duration in microseconds with the precision it deserves.
func us(d time.Duration) string {
	v := float64(d.Nanoseconds()) / 1e3
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f µs", v)
	case v < 1000:
		return fmt.Sprintf("%.0f µs", v)
	default:
		return fmt.Sprintf("%.2f ms", v/1e3)
	}
}

// cpuModel names the processor, from /proc/cpuinfo where there is one.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// loadAverage is the one-minute load average, where /proc has it.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}

// The generated table sits between these markers in BENCHMARKS.md.
const (
	beginMark = "<!-- bench: generated by (cd bench && go run . -write); edits between these lines are overwritten -->"
	endMark   = "<!-- bench: end -->"
)

// writeBenchmarks replaces the generated table in path (or appends a
// section holding it).
func writeBenchmarks(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	block := beginMark + "\n\n" + table + "\n" + endMark
	i, j := strings.Index(s, beginMark), strings.Index(s, endMark)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + block + s[j+len(endMark):]
	case i < 0 && j < 0:
		s = strings.TrimRight(s, "\n") + "\n\n## Andromeda beside its peers (`cd bench && go run .`)\n\n" + block + "\n"
	default:
		return fmt.Errorf("%s: one of the generated table's markers is missing", path)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
