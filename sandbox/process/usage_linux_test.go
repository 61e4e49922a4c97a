package process

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// usageServices report counters through each shim's ctx.usage: two reports
// of rows (summed), a bad name, a negative amount, and 40 more names of
// which MaxCounters-1 fit; the Python one also writes malformed usage
// messages straight to the protocol (counters not an object, a value that
// is not a number, null, an id not in flight), which the driver must drop
// and count without harm to the worker. A message {"light":true} reports
// rows 5 only.
var usageServices = map[string]struct {
	entry, source string
	junk          int // malformed reports, beyond the shim's own
}{
	LangNode: {"index.js", `exports.decide = (ctx) => {
  if (ctx.message && ctx.message.light) { ctx.usage('rows', 5); return { noop: 'light' }; }
  ctx.usage('rows', 1200);
  ctx.usage('rows', 34);
  ctx.usage('Bad Name', 1);
  ctx.usage('neg', -1);
  for (let i = 0; i < 40; i++) ctx.usage('c' + i, 1);
  return { noop: 'counted' };
};
`, 0},
	LangPython: {"main.py", `def decide(ctx):
    if (ctx.get("message") or {}).get("light"):
        ctx.usage("rows", 5)
        return {"noop": "light"}
    ctx.usage("rows", 1200)
    ctx.usage("rows", 34)
    ctx.usage("Bad Name", 1)
    ctx.usage("neg", -1)
    for i in range(40):
        ctx.usage("c%d" % i, 1)
    w = ctx._worker
    w.send({"type": "usage", "id": ctx._id, "counters": "junk"})
    w.send({"type": "usage", "id": ctx._id, "counters": {"rows": "many", "other": None}})
    w.send({"type": "usage", "id": "no-such-invocation", "counters": {"rows": 1}})
    return {"noop": "counted"}
`, 3},
}

// TestUsageCounters runs a Node.js and a Python service that report
// counters, in server and command mode: the run's usage sums them, drops
// and counts the bad ones, keeps them per run, and says whose peak memory
// it reports.
func TestUsageCounters(t *testing.T) {
	requireSandbox(t)
	d := newDriver(t, testConfig())
	for lang, svc := range usageServices {
		for _, mode := range []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand} {
			t.Run(lang+"-"+string(mode), func(t *testing.T) {
				requireLang(t, lang)
				t.Parallel()
				dir := filepath.Join(t.TempDir(), "svc")
				if err := writeService(dir, map[string]string{svc.entry: svc.source}); err != nil {
					t.Fatal(err)
				}
				dep := deploy(t, d, sandbox.Spec{Service: "usage-" + lang, Dir: dir, Entry: svc.entry, Language: lang, Mode: mode, Limits: sandbox.Limits{Concurrency: 1}})
				call := func(msg string) sandbox.Result {
					t.Helper()
					in := `{"run_id":"r-1","service":"s","trigger":{"kind":"manual"},"message":` + msg + `,"state":{},"config":{}}`
					r, err := sandbox.CallRaw(context.Background(), dep, []byte(in), 20*time.Second)
					if err != nil || r.Outcome != sandbox.Noop {
						t.Fatalf("call(%s) = %s %q, %v", msg, r.Outcome, r.Error, err)
					}
					return r
				}
				u := call(`{}`).Usage
				want := map[string]float64{"rows": 1234}
				for i := range sandbox.MaxCounters - 1 {
					want[fmt.Sprintf("c%d", i)] = 1
				}
				wantDropped := 2 + 40 - (sandbox.MaxCounters - 1) + svc.junk
				if got, _ := json.Marshal(u.Counters); string(got) != string(must(json.Marshal(want))) || u.CountersDropped != wantDropped {
					t.Errorf("usage counters = %s, dropped %d; want %s, dropped %d", got, u.CountersDropped, must(json.Marshal(want)), wantDropped)
				}
				wantScope := map[sandbox.Mode]string{sandbox.ModeServer: sandbox.MemoryWorker, sandbox.ModeCommand: sandbox.MemoryRun}[mode]
				if u.PeakMemory > 0 && u.MemoryScope != wantScope || u.PeakMemory == 0 && u.MemoryScope != "" {
					t.Errorf("peak memory %d, scope %q; want scope %q", u.PeakMemory, u.MemoryScope, wantScope)
				}
				// The next run on the same worker starts from nothing.
				if u := call(`{"light":true}`).Usage; len(u.Counters) != 1 || u.Counters["rows"] != 5 || u.CountersDropped != 0 {
					t.Errorf("second run's counters = %v, dropped %d; want rows 5 alone", u.Counters, u.CountersDropped)
				}
			})
		}
	}
}

// TestAddCounters feeds the driver's reading of a usage message every
// shape of counters a worker might send.
func TestAddCounters(t *testing.T) {
	for _, c := range []struct {
		raw     string
		want    string
		dropped int
	}{
		{`{"rows":1200,"bytes.out":3.5}`, `{"bytes.out":3.5,"rows":1200}`, 0},
		{`{"rows":1e400}`, `null`, 1},
		{`[1,2]`, `null`, 1},
		{`"rows"`, `null`, 1},
		{``, `null`, 1},
		{`{"rows":true,"n":null,"s":"1","o":{}}`, `null`, 4},
		{`{"Rows":1,"":2,"9x":3,"ok":-0.5}`, `null`, 4},
		{`{"ok":0}`, `{"ok":0}`, 0},
	} {
		var cs sandbox.Counters
		addCounters(&cs, json.RawMessage(c.raw))
		var u sandbox.Usage
		cs.Fill(&u)
		if got := string(must(json.Marshal(u.Counters))); got != c.want || u.CountersDropped != c.dropped {
			t.Errorf("addCounters(%s) = %s, dropped %d; want %s, dropped %d", c.raw, got, u.CountersDropped, c.want, c.dropped)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
