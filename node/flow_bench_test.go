package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// relayJS passes its message on to port out.
const relayJS = `exports.decide = async (ctx) => ({ emit: [{ port: 'out', message: ctx.message }] });`

// relayFlow is a linear flow of k modules of the relay service.
func relayFlow(id string, k int) string { return placedFlow(id, k, "relay") }

// startRelayFlows starts a node with the relay service (Node.js, server
// mode, concurrency 8) and running linear flows of it, by id.
func startRelayFlows(b *testing.B, flows map[string]int) *testNode {
	ctx := context.Background()
	n := startNode(b)
	requireProcess(b, n)
	if _, err := n.op.Submit(ctx, pack(b, nodeService(b, "relay", "{memory: 128Mi, timeout: 10s, concurrency: 8}", relayJS))); err != nil {
		b.Fatal(err)
	}
	for id, k := range flows {
		startWarm(b, n, id, relayFlow(id, k))
	}
	return n
}

// startWarm applies flow doc as id, starts it and warms it with one
// message (its workers start on the first run).
func startWarm(b *testing.B, n *testNode, id, doc string) {
	ctx := context.Background()
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(doc), false); err != nil {
		b.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, id); err != nil {
		b.Fatal(err)
	}
	if r, err := n.op.FireFlow(ctx, id, api.FlowFireRequest{Message: json.RawMessage(`{"warm":true}`), Wait: "1m"}); err != nil || r.Outcome != "ok" {
		b.Fatalf("warm %s = %+v, %v", id, r, err)
	}
}

// BenchmarkFlowHop measures a cross-runtime hop on one node: the time of
// a flow run (from its message stored to its record stored) through a
// flow of one relay module and through a flow of five, fired one at a
// time, alternately, in the same run. hop-p50-µs is the five-module
// flow's p50 less the one-module flow's, over the four hops between
// them: the node taking a module's emit, routing it as JSON and running
// the next module (a run of its service: a process worker round trip and
// a run record stored).
func BenchmarkFlowHop(b *testing.B) {
	ctx := context.Background()
	n := startRelayFlows(b, map[string]int{"one": 1, "five": 5})
	var one, five []time.Duration
	msg := json.RawMessage(`{"n":1}`)
	b.ResetTimer()
	for b.Loop() {
		for _, id := range []string{"one", "five"} {
			r, err := n.op.FireFlow(ctx, id, api.FlowFireRequest{Message: msg, Wait: "1m"})
			if err != nil || r.Outcome != "ok" {
				b.Fatalf("%s = %+v, %v", id, r, err)
			}
			if id == "one" {
				one = append(one, r.Duration)
			} else {
				five = append(five, r.Duration)
			}
		}
	}
	b.StopTimer()
	reportLatency(b, "one-module", one)
	reportLatency(b, "five-modules", five)
	slices.Sort(one)
	slices.Sort(five)
	p := func(l []time.Duration, q float64) time.Duration { return l[int(q*float64(len(l)-1))] }
	b.ReportMetric(float64((p(five, 0.5)-p(one, 0.5)).Microseconds())/4, "hop-p50-µs")
	b.ReportMetric(float64((p(five, 0.99)-p(one, 0.99)).Microseconds())/4, "hop-p99-µs")
}

// BenchmarkFlowThroughput measures messages per second through a linear
// flow of five relay modules (Node.js, each hop through the node), b.N
// messages fired from four callers without waiting, until every flow run
// is recorded; beside it, in the same run, a bare Node.js process that
// chains the same five functions in one event loop (the floor).
func BenchmarkFlowThroughput(b *testing.B) {
	n := startRelayFlows(b, map[string]int{"line": 5})
	b.ResetTimer()
	rate := throughput(b, n, "line")
	b.StopTimer()
	b.ReportMetric(rate, "msgs/s")
	b.ReportMetric(bareNodeChain(b, max(b.N, 10000)), "bare-node-msgs/s")
}

// throughput fires b.N messages at flow id from four callers without
// waiting and returns the messages per second until every flow run is
// recorded; each must have ended ok.
func throughput(b *testing.B, n *testNode, id string) float64 {
	return throughputOf(b, n, id, func(i int) json.RawMessage { return json.RawMessage(`{"n":` + strconv.Itoa(i) + `}`) })
}

// throughputOf is throughput with msg(i) the i-th message.
func throughputOf(b *testing.B, n *testNode, id string, msg func(i int) json.RawMessage) float64 {
	start := time.Now()
	fireFromFour(b, n, id, b.N, msg)
	waitFlowIdle(b, n, id, 10*time.Minute)
	el := time.Since(start)
	runs, err := n.op.FlowRuns(context.Background(), id, 1000)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range runs {
		if r.Outcome != "ok" {
			b.Fatalf("flow run %+v", r)
		}
	}
	return float64(b.N) / el.Seconds()
}

// fireFromFour fires count messages at flow id from four callers without
// waiting for their flow runs (a full queue is tried again), msg(i) the
// i-th message.
func fireFromFour(tb testing.TB, n *testNode, id string, count int, msg func(i int) json.RawMessage) {
	jobs := make(chan int, count)
	for i := range count {
		jobs <- i
	}
	close(jobs)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range jobs {
				if _, err := fireStored(n, id, api.FlowFireRequest{Message: msg(i)}); err != nil {
					tb.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// bareNodeChain is messages per second through five relay functions
// chained in one Node.js event loop, each message JSON-encoded and decoded
// at every hop as the flow does.
func bareNodeChain(b *testing.B, msgs int) float64 {
	script := `const relay = async (ctx) => ({ emit: [{ port: 'out', message: ctx.message }] });
const N = +process.argv[2];
(async () => {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    let m = JSON.stringify({ n: i });
    for (let k = 0; k < 5; k++) {
      const out = await relay({ message: JSON.parse(m) });
      m = JSON.stringify(out.emit[0].message);
    }
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log((N / s).toFixed(0));
})();`
	p := filepath.Join(b.TempDir(), "chain.js")
	if err := os.WriteFile(p, []byte(script), 0o644); err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command("node", p, strconv.Itoa(msgs)).Output()
	if err != nil {
		b.Fatal(err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// relayPy is relayJS in Python.
const relayPy = "def decide(ctx):\n    return {\"emit\": [{\"port\": \"out\", \"message\": ctx[\"message\"]}]}\n"

// placedFlow is a linear flow of k relay modules whose services are svcs
// in turn: one service puts every hop inside its worker, two alternating
// put every hop through the node.
func placedFlow(id string, k int, svcs ...string) string {
	var mods, wires strings.Builder
	for i := range k {
		fmt.Fprintf(&mods, "  - {id: m%d, service: %s}\n", i, svcs[i%len(svcs)])
		if i > 0 {
			fmt.Fprintf(&wires, "  - {from: m%d, to: m%d}\n", i-1, i)
		}
	}
	doc := "id: " + id + "\nversion: 1.0.0\nmodules:\n" + mods.String()
	if k > 1 {
		doc += "wires:\n" + wires.String()
	}
	return doc
}

// startPlacedFlows starts a node with two stateless relay services of
// language, ra and rb (concurrency 8), and the flows by id, each given as
// its length and services; every flow is warmed by one message.
// startMirrorFlows is startPlacedFlows with ra and rb two stateless
// copies of the mirror wasm reactor, each flow warmed with msg.
func startMirrorFlows(b *testing.B, flows map[string][]string, msg json.RawMessage) *testNode {
	ctx := context.Background()
	n := startNode(b)
	for _, name := range []string{"ra", "rb"} {
		dir := mirrorService(b, "name: mirror", "name: "+name, "target: vault-7\n", "", "state: true", "state: false", "memory: 16Mi", "memory: 64Mi")
		if _, err := n.op.Submit(ctx, pack(b, dir)); err != nil {
			b.Fatal(err)
		}
	}
	for id, svcs := range flows {
		k, _ := strconv.Atoi(svcs[0])
		if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(placedFlow(id, k, svcs[1:]...)), false); err != nil {
			b.Fatal(err)
		}
		if _, err := n.op.StartFlow(ctx, id); err != nil {
			b.Fatal(err)
		}
		if r, err := n.op.FireFlow(ctx, id, api.FlowFireRequest{Message: msg, Wait: "1m"}); err != nil || r.Outcome != "ok" {
			b.Fatalf("warm %s = %+v, %v", id, r, err)
		}
	}
	return n
}

func startPlacedFlows(b *testing.B, language string, flows map[string][]string) *testNode {
	ctx := context.Background()
	n := startNode(b)
	requireProcess(b, n)
	code := map[string]string{"node": relayJS, "python": relayPy}[language]
	for _, name := range []string{"ra", "rb"} {
		if _, err := n.op.Submit(ctx, pack(b, statelessService(b, name, language, code, 8))); err != nil {
			b.Fatal(err)
		}
	}
	for id, svcs := range flows {
		k, _ := strconv.Atoi(svcs[0])
		startWarm(b, n, id, placedFlow(id, k, svcs[1:]...))
	}
	return n
}

// BenchmarkFlowSameWorker measures a same-worker hop (runtime protocol
// 2) beside a hop through the node, in the same run, for Node.js,
// Python and wasm (the mirror reactor, its hops in the driver's instance
// pool): flows of one and five relay modules, all of one stateless
// service (every hop inside its worker) or of two alternating (every hop
// through the node), fired one at a time in turn. gap-p50-µs and
// gap-p99-µs are the hand-over inside the worker as the worker measures
// it (the sender's handler returning to the next one's starting: the
// route looked up, the run id derived, the input built; no JSON between
// them). worker-hop-p50-µs and node-hop-p50-µs are the whole cost of a
// hop as the flow run sees it, (five − one) / 4: inside the worker it
// includes the node recording the hop's run.
func BenchmarkFlowSameWorker(b *testing.B) {
	for _, language := range []string{"node", "python", "wasm"} {
		b.Run(language, func(b *testing.B) {
			ctx := context.Background()
			flows := map[string][]string{"one": {"1", "ra"}, "five-worker": {"5", "ra"}, "five-node": {"5", "ra", "rb"}}
			msg := json.RawMessage(`{"n":1}`)
			var n *testNode
			if language == "wasm" {
				// The mirror reactor returns its message: the message
				// nests what each of the five modules emits.
				msg = json.RawMessage(`{"noop":"end"}`)
				for range 4 {
					msg = json.RawMessage(`{"emit":[{"port":"out","message":` + string(msg) + `}]}`)
				}
				n = startMirrorFlows(b, flows, msg)
			} else {
				n = startPlacedFlows(b, language, flows)
			}
			durs := map[string][]time.Duration{}
			var gaps []time.Duration
			b.ResetTimer()
			for b.Loop() {
				for _, id := range []string{"one", "five-worker", "five-node"} {
					r, err := n.op.FireFlow(ctx, id, api.FlowFireRequest{Message: msg, Wait: "1m"})
					if err != nil || r.Outcome != "ok" {
						b.Fatalf("%s = %+v, %v", id, r, err)
					}
					durs[id] = append(durs[id], r.Duration)
					for _, s := range r.Steps {
						if s.InWorker != (id == "five-worker" && s.Module != "m0") {
							b.Fatalf("%s: step %+v, want in_worker only for m1..m4 of five-worker", id, s)
						}
						if s.InWorker {
							gaps = append(gaps, s.Queued)
						}
					}
				}
			}
			b.StopTimer()
			p := func(l []time.Duration, q float64) time.Duration {
				l = slices.Clone(l)
				slices.Sort(l)
				return l[int(q*float64(len(l)-1))]
			}
			b.ReportMetric(float64(p(gaps, 0.5).Nanoseconds())/1e3, "gap-p50-µs")
			b.ReportMetric(float64(p(gaps, 0.99).Nanoseconds())/1e3, "gap-p99-µs")
			one := p(durs["one"], 0.5)
			b.ReportMetric(float64((p(durs["five-worker"], 0.5)-one).Microseconds())/4, "worker-hop-p50-µs")
			b.ReportMetric(float64((p(durs["five-node"], 0.5)-one).Microseconds())/4, "node-hop-p50-µs")
		})
	}
}

// BenchmarkFlowThroughputSameWorker is BenchmarkFlowThroughput's five
// modules all of one stateless Node.js service (every hop inside its
// worker) and, in the same run, of two alternating (every hop through the
// node): messages per second, b.N each, fired from four callers without
// waiting, until every flow run is recorded; and the bare Node.js chain
// of the same five functions (the floor).
func BenchmarkFlowThroughputSameWorker(b *testing.B) {
	n := startPlacedFlows(b, "node", map[string][]string{"worker": {"5", "ra"}, "node": {"5", "ra", "rb"}})
	b.ResetTimer()
	for _, id := range []string{"worker", "node"} {
		b.ReportMetric(throughput(b, n, id), id+"-msgs/s")
	}
	b.StopTimer()
	b.ReportMetric(bareNodeChain(b, max(b.N, 10000)), "bare-node-msgs/s")
}

// BenchmarkFlowThroughputMixed measures messages per second through a
// linear flow of five modules in three runtimes, wasm → Node.js → Python
// → Node.js → wasm (every hop through the node, each module run a
// recorded run), b.N messages fired from four callers without waiting,
// until every flow run is recorded; beside it, in the same run, the five
// Node.js relays of BenchmarkFlowThroughput.
func BenchmarkFlowThroughputMixed(b *testing.B) {
	ctx := context.Background()
	n := startNode(b)
	requireProcess(b, n)
	py := b.TempDir()
	for file, text := range map[string]string{
		"andromeda.yaml": "name: pyrelay\nversion: 1.0.0\nruntime: {driver: process, language: python, entry: main.py}\nmode: server\n" +
			"triggers:\n  - {kind: manual}\nresources: {memory: 128Mi, timeout: 10s, concurrency: 8}\ncapabilities: {network: none}\n",
		"main.py": "def handle(input):\n    return {\"emit\": [{\"port\": \"out\", \"message\": input[\"message\"]}]}\n",
	} {
		if err := os.WriteFile(filepath.Join(py, file), []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, dir := range []string{mirrorService(b), nodeService(b, "relay", "{memory: 128Mi, timeout: 10s, concurrency: 8}", relayJS), py} {
		if _, err := n.op.Submit(ctx, pack(b, dir)); err != nil {
			b.Fatal(err)
		}
	}
	// The first mirror emits the message's emit; the last mirrors what
	// reached it, a noop.
	mixed := "id: mixed\nversion: 1.0.0\nmodules:\n  - {id: w1, service: mirror}\n  - {id: j1, service: relay}\n  - {id: p, service: pyrelay}\n" +
		"  - {id: j2, service: relay}\n  - {id: w2, service: mirror}\nwires:\n  - {from: w1, to: j1}\n  - {from: j1, to: p}\n  - {from: p, to: j2}\n  - {from: j2, to: w2}\n"
	msg := func(i int) json.RawMessage {
		return json.RawMessage(`{"emit":[{"port":"out","message":{"noop":"passed ` + strconv.Itoa(i) + `"}}]}`)
	}
	for _, f := range [][2]string{{"mixed", mixed}, {"node", relayFlow("node", 5)}} {
		if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(f[1]), false); err != nil {
			b.Fatal(err)
		}
		if _, err := n.op.StartFlow(ctx, f[0]); err != nil {
			b.Fatal(err)
		}
	}
	for _, id := range []string{"mixed", "node"} { // warm: the workers start on the first runs
		if r, err := n.op.FireFlow(ctx, id, api.FlowFireRequest{Message: msg(-1), Wait: "1m"}); err != nil || r.Outcome != "ok" {
			b.Fatalf("warm %s = %+v, %v", id, r, err)
		}
	}
	b.ResetTimer()
	b.ReportMetric(throughputOf(b, n, "mixed", msg), "mixed-msgs/s")
	b.ReportMetric(throughputOf(b, n, "node", msg), "node-msgs/s")
}
