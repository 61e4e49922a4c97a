package policy

import (
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/manifest"
)

// pluginPolicy is a policy with a CEL rule, then a plugin rule budget,
// then another plugin rule quota, and memory ceiling 256Mi.
func pluginPolicy(t *testing.T, extra string) *Compiled {
	t.Helper()
	p, err := Parse([]byte(`
limits:
  memory: {max: 256Mi}
  cpu: {max: 1}
  timeout: {max: 10s}
  pids: {max: 64}
  concurrency: {max: 4}
rules:
  - {name: not-evil, expr: 'service.name != "evil"', message: no evil services}
  - {name: budget, service: admission-budget, digest: ` + digestA + `}
  - {name: quota, service: admission-quota, digest: ` + digestB + `, timeout: 500ms, message: over quota}
` + extra))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pluginSubmission(t *testing.T, name string, plugins map[string]PluginAnswer) Submission {
	t.Helper()
	m, err := manifest.Check([]byte(`
name: `+name+`
version: 1.0.0
runtime: {driver: wasm, language: go, entry: main.wasm}
resources: {memory: 200Mi, cpu: 0.5, timeout: 5s, pids: 32, concurrency: 2}
`), manifest.YAML)
	if err != nil {
		t.Fatal(err)
	}
	return Submission{Manifest: m, Digest: digestA, PayloadSize: 4096, Plugins: plugins}
}

func answer(t *testing.T, raw string) PluginAnswer {
	t.Helper()
	a, err := ParsePluginAnswer([]byte(raw))
	if err != nil {
		t.Fatalf("ParsePluginAnswer(%s): %v", raw, err)
	}
	return a
}

func TestPluginRules(t *testing.T) {
	c := pluginPolicy(t, "")
	got := c.Plugins()
	if len(got) != 2 || got[0] != (PluginRule{Name: "budget", Service: "admission-budget", Digest: digestA, Timeout: DefaultPluginTimeout}) ||
		got[1].Name != "quota" || got[1].Timeout.String() != "500ms" {
		t.Fatalf("Plugins() = %+v", got)
	}
	if c := pluginPolicy(t, "").Policy(); c.Rules[1].Timeout.String() != "2s" {
		t.Errorf("normalized timeout = %q, want the default 2s", c.Rules[1].Timeout)
	}
}

// TestPluginFold: the plugins' answers fold into the decision like a
// built-in rule; they narrow and never widen.
func TestPluginFold(t *testing.T) {
	c := pluginPolicy(t, "")
	run := answer(t, `{"verdict": "run"}`)
	for _, tc := range []struct {
		name    string
		service string
		budget  *PluginAnswer // nil: not in the map
		quota   PluginAnswer
		verdict Verdict
		limits  Limits
		detail  map[string]string // rule → part of its detail
		failed  []string
	}{
		{
			name: "both run, nothing narrowed", service: "svc", budget: &run, quota: run, verdict: Run,
			limits: Limits{Memory: 200 << 20, CPU: 0.5, TimeoutMS: 5000, Pids: 32, Concurrency: 2},
			detail: map[string]string{"rules.budget": "plugin admission-budget answers run", "rules.quota": "plugin admission-quota answers run"},
		},
		{
			name: "narrows memory and more", service: "svc",
			budget:  ptrTo(answer(t, `{"verdict": "run", "reasons": ["within budget"], "limits": {"memory": "128Mi", "cpu": "250m", "timeout": "2s", "pids": 16, "concurrency": 1}}`)),
			quota:   run,
			verdict: Run,
			limits:  Limits{Memory: 128 << 20, CPU: 0.25, TimeoutMS: 2000, Pids: 16, Concurrency: 1},
			detail:  map[string]string{"rules.budget": "plugin admission-budget answers run: within budget; memory narrowed to 128Mi (the built-in rules allow 200Mi); cpu narrowed to 250m (the built-in rules allow 0.5 cores); timeout narrowed to 2s (the built-in rules allow 5s); pids narrowed to 16 (the built-in rules allow 32); concurrency narrowed to 1 (the built-in rules allow 2)"},
		},
		{
			name: "two plugins: the least of both", service: "svc",
			budget:  ptrTo(answer(t, `{"verdict": "run", "limits": {"memory": "100Mi", "pids": 20}}`)),
			quota:   answer(t, `{"verdict": "run", "limits": {"memory": "150Mi", "pids": 10}}`),
			verdict: Run,
			limits:  Limits{Memory: 100 << 20, CPU: 0.5, TimeoutMS: 5000, Pids: 10, Concurrency: 2},
			detail:  map[string]string{"rules.quota": "memory 150Mi clamped to 100Mi: a plugin narrows what the built-in rules allow, never widens it; pids narrowed to 10"},
		},
		{
			name: "more than the ceiling is clamped", service: "svc",
			budget:  ptrTo(answer(t, `{"verdict": "run", "limits": {"memory": "4Gi", "cpu": 8, "concurrency": 100}}`)),
			quota:   run,
			verdict: Run,
			limits:  Limits{Memory: 200 << 20, CPU: 0.5, TimeoutMS: 5000, Pids: 32, Concurrency: 2},
			detail:  map[string]string{"rules.budget": "memory 4Gi clamped to 200Mi: a plugin narrows what the built-in rules allow, never widens it; cpu 8 cores clamped to 0.5 cores"},
		},
		{
			name: "run does not override a failing built-in rule", service: "evil", budget: &run, quota: run,
			verdict: Reject, failed: []string{"rules.not-evil"},
			limits: Limits{Memory: 200 << 20, CPU: 0.5, TimeoutMS: 5000, Pids: 32, Concurrency: 2},
		},
		{
			name: "reject with reasons", service: "svc", budget: &run,
			quota:   answer(t, `{"verdict": "reject", "reasons": ["submitter alice spent 10 of 10 runs", "try tomorrow"]}`),
			verdict: Reject, failed: []string{"rules.quota"},
			detail: map[string]string{"rules.quota": "plugin admission-quota rejects: submitter alice spent 10 of 10 runs; try tomorrow"},
		},
		{
			name: "reject without reasons says the rule's message", service: "svc", budget: &run,
			quota:   answer(t, `{"verdict": "reject"}`),
			verdict: Reject, failed: []string{"rules.quota"},
			detail: map[string]string{"rules.quota": "plugin admission-quota rejects: over quota"},
		},
		{
			name: "a failure fails the rule", service: "svc", budget: ptrTo(PluginFailed("timed out after 2s")), quota: run,
			verdict: Reject, failed: []string{"rules.budget"},
			detail: map[string]string{"rules.budget": "plugin admission-budget: timed out after 2s"},
		},
		{
			name: "not consulted fails the rule", service: "svc", quota: run,
			verdict: Reject, failed: []string{"rules.budget"},
			detail: map[string]string{"rules.budget": "plugin admission-budget was not consulted"},
		},
		{
			name: "a bad answer passed in fails the rule", service: "svc", budget: &PluginAnswer{Verdict: "maybe"}, quota: run,
			verdict: Reject, failed: []string{"rules.budget"},
			detail: map[string]string{"rules.budget": `plugin admission-budget answered badly: verdict: must be run or reject, not "maybe"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plugins := map[string]PluginAnswer{"quota": tc.quota}
			if tc.budget != nil {
				plugins["budget"] = *tc.budget
			}
			d := c.Admit(pluginSubmission(t, tc.service, plugins), testNode())
			if d.Verdict != tc.verdict {
				t.Fatalf("verdict = %s, want %s; reasons %+v", d.Verdict, tc.verdict, d.Reasons)
			}
			if f := failed(d); strings.Join(f, ",") != strings.Join(tc.failed, ",") {
				t.Errorf("failed = %v, want %v", f, tc.failed)
			}
			if tc.verdict == Run && (d.Limits.Memory != tc.limits.Memory || d.Limits.CPU != tc.limits.CPU || d.Limits.TimeoutMS != tc.limits.TimeoutMS || d.Limits.Pids != tc.limits.Pids || d.Limits.Concurrency != tc.limits.Concurrency) {
				t.Errorf("limits = %+v, want %+v", d.Limits, tc.limits)
			}
			for rule, want := range tc.detail {
				if r := reasonOf(d, rule); !strings.Contains(r.Detail, want) {
					t.Errorf("%s = %q, want it to contain %q", rule, r.Detail, want)
				}
			}
			// Rules keep their policy order.
			var order []string
			for _, r := range d.Reasons {
				if strings.HasPrefix(r.Rule, "rules.") {
					order = append(order, r.Rule)
				}
			}
			if strings.Join(order, ",") != "rules.not-evil,rules.budget,rules.quota" {
				t.Errorf("rule order = %v", order)
			}
		})
	}
}

// TestPluginForward: a plugin's rejection is this node's preference, so a
// peer may take the service.
func TestPluginForward(t *testing.T) {
	c := pluginPolicy(t, "peers: [https://peer.example]\n")
	d := c.Admit(pluginSubmission(t, "svc", map[string]PluginAnswer{
		"budget": answer(t, `{"verdict": "reject", "reasons": ["no budget left here"]}`),
		"quota":  answer(t, `{"verdict": "run"}`),
	}), testNode())
	if d.Verdict != Forward || d.Forward == nil || d.Forward.Peer != "https://peer.example" {
		t.Fatalf("decision = %s %+v", d.Verdict, d.Forward)
	}
}

// TestPreliminary: the decision before the plugins are consulted leaves
// them out, and says so.
func TestPreliminary(t *testing.T) {
	c := pluginPolicy(t, "")
	d := c.Preliminary(pluginSubmission(t, "svc", nil), testNode())
	if d.Verdict != Run {
		t.Fatalf("preliminary verdict = %s; reasons %+v", d.Verdict, d.Reasons)
	}
	if r := reasonOf(d, "rules.budget"); !r.OK || !strings.Contains(r.Detail, "not consulted yet") {
		t.Errorf("rules.budget = %+v", r)
	}
	if d := c.Preliminary(pluginSubmission(t, "evil", nil), testNode()); d.Verdict != Reject {
		t.Errorf("preliminary of evil = %s, want reject", d.Verdict)
	}
	// Admit itself never treats a plugin as consulted without an answer.
	if d := c.Admit(pluginSubmission(t, "svc", nil), testNode()); d.Verdict != Reject {
		t.Errorf("Admit without answers = %s, want reject", d.Verdict)
	}
}

func TestParsePluginAnswer(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"verdict": "run", "reasons": ["ok"], "limits": {"memory": "64Mi", "cpu": "0.5", "timeout": "1s", "pids": 8, "concurrency": 1}}`, ""},
		{`{"verdict": "reject", "reasons": ["no"]}`, ""},
		{`{"verdict": "run", "limits": {"memory": 1048576, "cpu": 1}}`, ""},
		{``, "must not be empty"},
		{`not json`, "json syntax"},
		{`{"verdict": "run"} {}`, "trailing data"},
		{`{"verdict": "perhaps"}`, `verdict: must be run or reject, not "perhaps"`},
		{`{"reasons": ["x"]}`, "verdict: required: run or reject"},
		{`{"verdict": "run", "extra": 1}`, `unknown field "extra"`},
		{`{"verdict": "run", "limits": {"memory": "lots"}}`, "limits.memory"},
		{`{"verdict": "run", "limits": {"memory": "-1Mi"}}`, "limits.memory: must be more than 0"},
		{`{"verdict": "run", "limits": {"cpu": "0"}}`, "limits.cpu: must be more than 0"},
		{`{"verdict": "run", "limits": {"timeout": "-1s"}}`, "limits.timeout: must be more than 0"},
		{`{"verdict": "run", "limits": {"timeout": "5"}}`, "limits.timeout"},
		{`{"verdict": "run", "limits": {"pids": -1}}`, "limits.pids: must be more than 0"},
		{`{"verdict": "run", "limits": {"pids": 0}}`, "limits.pids: must be more than 0, not 0"},
		{`{"verdict": "run", "limits": {"concurrency": 0}}`, "limits.concurrency: must be more than 0, not 0"},
		{`{"verdict": "run", "limits": {"concurrency": -3}}`, "limits.concurrency: must be more than 0, not -3"},
		{`{"verdict": "run", "limits": {"pids": null, "concurrency": null}}`, ""},
		{`{"verdict": "run", "limits": {"pids": 0, "memory": "0"}}`, "limits.memory: must be more than 0"},
		{`{"verdict": "run", "limits": {"gpus": 1}}`, `unknown field "gpus"`},
		{`{"verdict": "run", "reasons": ["two\nlines"]}`, "reasons[0]: must be one line of text"},
		{`{"verdict": "run", "reasons": [""]}`, "reasons[0]: must not be empty"},
		{`{"verdict": "run", "reasons": ["` + strings.Repeat("x", MaxPluginReasonLen+1) + `"]}`, "reasons[0]: at most 512 bytes"},
		{`{"verdict": "run", "reasons": [` + strings.TrimSuffix(strings.Repeat(`"x",`, MaxPluginReasons+1), ",") + `]}`, "reasons: at most 16"},
		{`{"verdict": "run", "reasons": "` + strings.Repeat("x", MaxPluginAnswer) + `"}`, "more than 65536"},
	} {
		_, err := ParsePluginAnswer([]byte(tc.in))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ParsePluginAnswer(%.60s) = %v, want no error", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ParsePluginAnswer(%.60s) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestPluginRuleValidate(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"service without digest", "rules:\n  - {name: x, expr: 'true'}\n  - {name: b, service: admission-budget}\n", []string{"rules[1].digest: required with service"}},
		{"digest without service", "rules:\n  - {name: b, digest: " + digestA + "}\n", []string{"rules[0].service: required with digest"}},
		{"both expr and service", "rules:\n  - {name: b, expr: 'true', service: p, digest: " + digestA + "}\n", []string{"rules[0]: set expr (a CEL condition) or service (an admission plugin), not both"}},
		{"bad digest", "rules:\n  - {name: b, service: p, digest: sha256:ABC}\n", []string{"rules[0].digest: must be sha256: and 64 lowercase hex digits"}},
		{"bad service", "rules:\n  - {name: b, service: Budget_Plugin, digest: " + digestA + "}\n", []string{"rules[0].service: must be a service name"}},
		{"timeout too long", "rules:\n  - {name: b, service: p, digest: " + digestA + ", timeout: 1m}\n", []string{"rules[0].timeout: must be from 1ms to 30s"}},
		{"timeout not a duration", "rules:\n  - {name: b, service: p, digest: " + digestA + ", timeout: 5}\n", []string{"rules[0].timeout"}},
		{"timeout on an expr rule", "rules:\n  - {name: b, expr: 'true', timeout: 1s}\n", []string{"rules[0]: set expr", "rules[0].service: required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.in))
			if err == nil {
				_, err = Compile(p)
			}
			if err == nil {
				t.Fatalf("no error, want %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

// FuzzParsePluginAnswer: whatever a plugin writes, parsing it never
// panics, and an answer it accepts folds without failing as malformed.
func FuzzParsePluginAnswer(f *testing.F) {
	for _, s := range []string{
		`{"verdict": "run", "reasons": ["ok"], "limits": {"memory": "64Mi", "cpu": "0.5", "timeout": "1s", "pids": 8, "concurrency": 1}}`,
		`{"verdict": "reject", "reasons": ["no"]}`,
		`{"verdict": "run", "limits": {"memory": 0}}`,
		`{"verdict": "run", "limits": {"cpu": "1e400"}}`,
		`[]`, `null`, `{"verdict": null}`,
	} {
		f.Add([]byte(s))
	}
	c, err := Compile(Policy{Rules: []Rule{{Name: "p", Service: "plugin", Digest: digestA}}, Limits: DefaultPolicy().Limits, MaxPayload: DefaultPolicy().MaxPayload, MaxVolumeSize: DefaultPolicy().MaxVolumeSize, Network: Network{Any: true}, RedirectDepth: 1})
	if err != nil {
		f.Fatal(err)
	}
	m, err := manifest.Check([]byte("name: svc\nversion: 1.0.0\nruntime: {driver: wasm, language: go, entry: main.wasm}\n"), manifest.YAML)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, err := ParsePluginAnswer(raw)
		if err != nil {
			return
		}
		d := c.Admit(Submission{Manifest: m, Digest: digestA, Plugins: map[string]PluginAnswer{"p": a}}, testNode())
		if r := reasonOf(d, "rules.p"); strings.Contains(r.Detail, "answered badly") {
			t.Fatalf("an accepted answer %q folds as bad: %s", raw, r.Detail)
		}
		if d.Limits.Memory > DefaultPolicy().Limits.Memory.Max.Int64() {
			t.Fatalf("answer %q widened memory to %d", raw, d.Limits.Memory)
		}
	})
}

func ptrTo[T any](v T) *T { return &v }
