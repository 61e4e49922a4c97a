package flow

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/strictdoc"
)

// catalog is a node with three services, python on the process driver and
// wasm on the wasm driver.
var catalog = Catalog{
	Services: map[string]Service{
		"order-parser": {Language: "wasm"},
		"order-store":  {Language: "node", Runtime: "process/node"},
		"pager":        {Language: "exec", Inputs: []string{"in", "urgent"}},
	},
	Runtimes: map[string][]string{
		"wasm":           {"wasm"},
		"process/exec":   {"exec"},
		"process/node":   {"node"},
		"process/python": {"python"},
		"docker/node":    {"node"},
		"browser/kiosk":  {"javascript", "node"},
	},
}

func readExample(t *testing.T) *Flow {
	t.Helper()
	data, err := os.ReadFile("testdata/orders.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fl, err := ParseFile("orders.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	return fl
}

// TestExample: the documented example parses and passes Check; its
// ports are those it names (score has a retry port only if its service
// says so: an inline module has in, out and error).
func TestExample(t *testing.T) {
	fl := readExample(t)
	if fl.ID != "orders" || len(fl.Modules) != 4 || len(fl.Wires) != 4 || fl.Wires[2].Loop != 3 || fl.Context["threshold"] != int64(10) {
		t.Fatalf("parsed %+v", fl)
	}
	err := Check(fl, catalog)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Path != "wires[2].from" || !strings.Contains(errs[0].Rule, `module score has no output port "retry" (its output ports: out, error)`) {
		t.Fatalf("Check = %v, want only the retry port refused", err)
	}
	fl.Wires[2].From = "score:error"
	if err := Check(fl, catalog); err != nil {
		t.Fatalf("Check = %v", err)
	}
}

// TestFormats: the same flow written in YAML, JSON and TOML decodes to the
// same value.
func TestFormats(t *testing.T) {
	yaml := "id: f\nversion: 1.0.0\nmodules:\n  - {id: a, service: pager}\n  - {id: b, language: node, code: \"x\", config: {k: [1, true]}}\nwires:\n  - {from: a, to: \"b:in\", loop: 2}\n"
	json := `{"id":"f","version":"1.0.0","modules":[{"id":"a","service":"pager"},{"id":"b","language":"node","code":"x","config":{"k":[1,true]}}],"wires":[{"from":"a","to":"b:in","loop":2}]}`
	toml := "id = \"f\"\nversion = \"1.0.0\"\n[[modules]]\nid = \"a\"\nservice = \"pager\"\n[[modules]]\nid = \"b\"\nlanguage = \"node\"\ncode = \"x\"\nconfig = {k = [1, true]}\n[[wires]]\nfrom = \"a\"\nto = \"b:in\"\nloop = 2\n"
	var got []*Flow
	for _, doc := range []struct {
		f    strictdoc.Format
		text string
	}{{strictdoc.YAML, yaml}, {strictdoc.JSON, json}, {strictdoc.TOML, toml}} {
		fl, err := Parse(doc.f, []byte(doc.text))
		if err != nil {
			t.Fatalf("%s: %v", doc.text, err)
		}
		got = append(got, fl)
	}
	if !reflect.DeepEqual(got[0], got[1]) || !reflect.DeepEqual(got[0], got[2]) {
		t.Fatalf("formats differ:\n%+v\n%+v\n%+v", got[0], got[1], got[2])
	}
}

// TestParseStrict: the decoder's rules hold for flows, every problem with
// its path.
func TestParseStrict(t *testing.T) {
	_, err := Parse(strictdoc.YAML, []byte("id: f\nversion: 1.0.0\nmodules:\n  - {id: a, servce: x}\nwires:\n  - {from: a, to: b, loop: many}\nid: g\n"))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse = %v, want Errors", err)
	}
	text := err.Error()
	for _, want := range []string{`modules[0].servce: unknown field "servce" (did you mean "service"?)`, "wires[0].loop:", "id: duplicate key"} {
		if !strings.Contains(text, want) {
			t.Errorf("Parse errors lack %q:\n%s", want, text)
		}
	}
	if _, err := ParseFile("flow.txt", []byte("{}")); err == nil || !strings.Contains(err.Error(), ".yaml, .yml, .json or .toml") {
		t.Errorf("ParseFile(flow.txt) = %v", err)
	}
}

// TestCheckEveryError: one flow breaking every rule gets every problem in
// one answer, each at its path.
func TestCheckEveryError(t *testing.T) {
	fl := &Flow{
		ID:          "Bad_ID",
		Version:     "1.0",
		Description: strings.Repeat("x", maxDescription+1),
		Modules: []Module{
			{ID: "a", Service: "pager"},                              // 0
			{ID: "a", Service: "pager"},                              // 1 duplicate id
			{ID: "b", Service: "nope"},                               // 2 unknown service
			{ID: "c", Service: "pager", Language: "node", Code: "x"}, // 3 both
			{ID: "d"},                               // 4 neither
			{ID: "e", Language: "cobol", Code: "x"}, // 5 no runtime runs it
			{ID: "f", Language: "node"},             // 6 no code
			{ID: "g", Code: "x"},                    // 7 no language
			{ID: "h", Service: "order-parser", Runtime: "process/python"},                     // 8 runtime cannot run wasm
			{ID: "i", Service: "pager", Runtime: "moon"},                                      // 9 unknown runtime
			{ID: "j", Service: "pager"},                                                       // 10 in a plain cycle with k
			{ID: "k", Service: "pager"},                                                       // 11
			{ID: "", Service: "pager"},                                                        // 12 no id
			{ID: "l", Language: "python", Code: strings.Repeat("#", MaxCode+1)},               // 13 code too long
			{ID: "m", Service: "order-store", Runtime: "docker/node"},                         // 14 not where its service runs
			{ID: "n", Service: "pager", WhenGone: "queue"},                                    // 15 not on a browser
			{ID: "o", Service: "order-store", Runtime: "browser/kiosk", WhenGone: "later"},    // 16 no such choice
			{ID: "p", Service: "order-store", Runtime: "browser/kiosk", WhenGone: "failover"}, // 17 fine
			{ID: "q", Service: "order-parser", Runtime: "browser/kiosk"},                      // 18 wasm on a browser
		},
		Wires: []Wire{
			{From: "a", To: "zz"},             // 0 unknown module
			{From: "a:nope", To: "j"},         // 1 unknown output port
			{From: "a", To: "j:nope"},         // 2 unknown input port
			{From: "a", To: "j:urgent"},       // 3 fine: pager has an urgent input
			{From: "a", To: "j:urgent"},       // 4 duplicate of 3
			{From: "j", To: "k"},              // 5
			{From: "k", To: "j"},              // 6 closes j → k → j
			{From: "a:x:y", To: "k"},          // 7 bad end
			{From: "", To: "k"},               // 8 missing from
			{From: "a", To: "k", Loop: 2},     // 9 a loop that closes no cycle
			{From: "a", To: "k:in", Loop: -1}, // 10 bad loop
		},
	}
	err := Check(fl, catalog)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Check = %v, want Errors", err)
	}
	want := []string{
		"id: must match",
		"version: must be MAJOR.MINOR.PATCH",
		"description: must be at most 4096 characters",
		"modules[1].id: duplicate of modules[0]",
		`modules[2].service: no service named "nope" on this node`,
		"modules[3]: service and language/code are exclusive",
		"modules[4]: one of service, or language and code, is required",
		`modules[5].language: no runtime on this node runs "cobol" (languages: exec, javascript, node, python, wasm)`,
		"modules[6].code: required with language",
		"modules[7].language: required with code",
		"modules[8].runtime: process/python does not run wasm (it runs: python)",
		`modules[9].runtime: no runtime "moon" on this node (runtimes: browser/kiosk, docker/node, process/exec, process/node, process/python, wasm)`,
		"modules[12].id: required",
		"modules[13].code: must be at most",
		"modules[14].runtime: service order-store runs on process/node: a module runs where its service runs, or on a browser runtime (browser/ID)",
		"modules[15].when_gone: only for a module placed on a browser runtime (runtime: browser/ID)",
		`modules[16].when_gone: must be queue or failover, got "later"`,
		"modules[18].runtime: browser/kiosk does not run wasm (it runs: javascript, node)",
		`wires[0].to: no module "zz" in this flow`,
		`wires[1].from: module a has no output port "nope" (its output ports: out, error)`,
		`wires[2].to: module j has no input port "nope" (its input ports: in, urgent)`,
		"wires[4]: duplicate of wires[3]",
		"wires[6]: closes a cycle j → k → j; mark one wire of it with loop: N",
		`wires[7].from: must be module:port or module, got "a:x:y"`,
		"wires[8].from: required",
		"wires[9].loop: this wire closes no cycle: k does not lead back to a",
		"wires[10].loop: must be from 1 to 1000 rounds, or left out",
	}
	text := err.Error()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("missing %q", w)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(errs), len(want), text)
	}
}

// TestCheckReachability: a module only an unmarked cycle leads to, with
// no way in from an entry, is unreachable; a flow with no entry at all
// says so; a cycle whose way back is a loop wire is fine.
func TestCheckReachability(t *testing.T) {
	mods := func(ids ...string) []Module {
		var ms []Module
		for _, id := range ids {
			ms = append(ms, Module{ID: id, Service: "pager"})
		}
		return ms
	}
	ok := &Flow{ID: "f", Version: "1.0.0", Modules: mods("a", "b", "c"), Wires: []Wire{{From: "a", To: "b"}, {From: "b", To: "c"}, {From: "c", To: "b", Loop: 5}}}
	if err := Check(ok, catalog); err != nil {
		t.Errorf("a loop reached from an entry: %v", err)
	}
	// b ⇄ c without a loop mark: neither is an entry, and a does not
	// lead to them.
	island := &Flow{ID: "f", Version: "1.0.0", Modules: mods("a", "b", "c"), Wires: []Wire{{From: "b", To: "c"}, {From: "c", To: "b"}}}
	err := Check(island, catalog)
	if err == nil || !strings.Contains(err.Error(), "modules[1]: unreachable") || !strings.Contains(err.Error(), "modules[2]: unreachable") {
		t.Errorf("an island cycle: %v", err)
	}
	// With the way back marked, b is an entry of its own.
	island.Wires[1].Loop = 5
	if err := Check(island, catalog); err != nil {
		t.Errorf("an island loop: %v", err)
	}
	back := &Flow{ID: "f", Version: "1.0.0", Modules: mods("a", "b"), Wires: []Wire{{From: "a", To: "b"}, {From: "b", To: "a", Loop: 1}}}
	if err := Check(back, catalog); err != nil {
		t.Errorf("a loop back to the entry: %v", err)
	}
	closed := &Flow{ID: "f", Version: "1.0.0", Modules: mods("a", "b"), Wires: []Wire{{From: "a", To: "b"}, {From: "b", To: "a"}}}
	if err := Check(closed, catalog); err == nil || !strings.Contains(err.Error(), "modules: no entry module") || !strings.Contains(err.Error(), "closes a cycle a → b → a") {
		t.Errorf("no entry: %v", err)
	}
	self := &Flow{ID: "f", Version: "1.0.0", Modules: mods("a", "b"), Wires: []Wire{{From: "a", To: "b"}, {From: "b", To: "b"}}}
	if err := Check(self, catalog); err == nil || !strings.Contains(err.Error(), "wires[1]: closes a cycle b → b") {
		t.Errorf("a wire to itself: %v", err)
	}
	if err := Check(&Flow{ID: "f", Version: "1.0.0"}, catalog); err == nil || !strings.Contains(err.Error(), "modules: at least one module is required") {
		t.Errorf("no modules: %v", err)
	}
}

// FuzzFlow: any bytes in any format are parsed without a panic, and what
// parses is checked without one; every problem has a rule.
func FuzzFlow(f *testing.F) {
	data, err := os.ReadFile("testdata/orders.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data, uint8(0))
	f.Add([]byte(`{"id":"f","version":"1.0.0","modules":[{"id":"a","service":"pager"}],"wires":[{"from":"a","to":"a","loop":1}]}`), uint8(1))
	f.Add([]byte("id = \"f\"\n[[modules]]\nid = \"a\"\n"), uint8(2))
	formats := []strictdoc.Format{strictdoc.YAML, strictdoc.JSON, strictdoc.TOML}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		fl, err := Parse(formats[int(which)%len(formats)], data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("Parse error %v is not Errors", err)
			}
			return
		}
		err = Check(fl, catalog)
		var errs Errors
		if err != nil && (!errors.As(err, &errs) || len(errs) == 0) {
			t.Fatalf("Check error %v is not Errors", err)
		}
		for _, e := range errs {
			if e.Rule == "" {
				t.Fatalf("a problem without a rule at %q", e.Path)
			}
		}
	})
}

// TestTriggers: cron and event triggers parse with a service trigger's
// fields and pass Check; each rule a service's trigger breaks is reported
// at its path here too, and kinds that do not start flows say what to do
// instead.
func TestTriggers(t *testing.T) {
	good := "id: t\nversion: 1.0.0\nmodules:\n  - {id: a, service: pager}\n  - {id: b, service: pager}\nwires:\n  - {from: a, to: b}\n" +
		"triggers:\n  - {kind: cron, every: 30s, input: {tick: 1}}\n  - {kind: cron, schedule: '*/5 * * * * *', module: b}\n  - {kind: event, topic: orders.new}\n"
	fl, err := Parse(strictdoc.YAML, []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(fl, catalog); err != nil {
		t.Fatalf("Check = %v", err)
	}
	if len(fl.Triggers) != 3 || fl.Triggers[0].Every.Std() != 30*time.Second || fl.Triggers[1].Module != "b" || fl.Triggers[2].Topic != "orders.new" {
		t.Errorf("triggers = %+v", fl.Triggers)
	}

	bad := "id: t\nversion: 1.0.0\nmodules:\n  - {id: a, service: pager}\n" +
		"triggers:\n  - {kind: cron, every: 500ms}\n  - {kind: cron, every: 1m, schedule: '@hourly'}\n  - {kind: event, topic: 'orders.*'}\n" +
		"  - {kind: cron, every: 1m, topic: x}\n  - {kind: http}\n  - {kind: manual}\n  - {kind: event, topic: a.b, module: zz}\n  - {kind: bell}\n  - {kind: cron}\n"
	fl, err = Parse(strictdoc.YAML, []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	err = Check(fl, catalog)
	want := []string{
		"triggers[0].every: must be a duration ≥ 1s",
		"triggers[1].schedule: not allowed together with every",
		"triggers[2].topic: ",
		"triggers[3].topic: not allowed for kind cron",
		"triggers[4].path: required for kind http",
		"triggers[5].kind: a flow is fired by hand with andromeda flow fire",
		`triggers[6].module: no module "zz"`,
		"triggers[7].kind: must be cron, event or http",
		"triggers[8]: cron needs every or schedule",
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Check = %v, want Errors", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(errs), len(want), err)
	}
	fl, err = Parse(strictdoc.YAML, []byte("id: t\nversion: 1.0.0\nmodules: [{id: a, service: pager}]\ntriggers:\n  - {kind: cron, every: soon}\n  - {kind: http, path: /hooks/t, methods: [get], auth: {bearer: s}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(fl, catalog); err == nil || !strings.Contains(err.Error(), "triggers[0].every") || strings.Contains(err.Error(), "triggers[1]") {
		t.Errorf("a bad duration and a good webhook = %v, want one error at triggers[0].every", err)
	}
}
