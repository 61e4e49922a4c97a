package node_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
)

// inlineFlow is a flow of two inline modules, Node.js a → Python b; b
// marks the text with mark.
func inlineFlow(version, mark string) string {
	return "id: inl\nversion: " + version + "\nmodules:\n" +
		"  - id: a\n    language: node\n    code: |\n      exports.decide = (ctx) => ({ emit: [{ port: 'out', message: { s: ctx.message.s + '-js' } }] });\n" +
		"  - id: b\n    language: python\n    code: |\n      def decide(ctx):\n          return {\"emit\": [{\"port\": \"out\", \"message\": {\"s\": ctx[\"message\"][\"s\"] + \"-" + mark + "\"}}]}\n" +
		"wires:\n  - {from: a, to: b}\n"
}

// TestFlowInline: inline modules run as services the node makes when the
// flow starts, admitted like any submission and owned by the flow's owner:
// a Node.js → Python flow of inline code passes its message; a new version
// that changes only b's code makes a new version of b's service and
// keeps a's; a version without b removes b's service; a service of the
// name an inline module would take that is not the flow's is never
// replaced (409); removing the flow removes its inline services.
func TestFlowInline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	const yaml = "application/yaml"
	if _, err := n.op.ApplyFlow(ctx, yaml, []byte(inlineFlow("1.0.0", "py")), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.Service(ctx, "inl-a"); status(err) != 404 {
		t.Fatalf("inl-a before the start = %v, want 404: nothing is made before the flow starts", err)
	}
	f, err := n.op.StartFlow(ctx, "inl")
	if err != nil {
		t.Fatal(err)
	}
	if f.Modules[0].Service != "inl-a" || f.Modules[0].Runtime != "process/node" || f.Modules[1].Service != "inl-b" || f.Modules[1].Runtime != "process/python" {
		t.Errorf("modules = %+v, want inl-a on process/node and inl-b on process/python", f.Modules)
	}
	a1, err := n.op.Service(ctx, "inl-a")
	if err != nil || a1.Owner != "operator" || !strings.HasPrefix(a1.Version, "0.0.0-inline-") {
		t.Fatalf("inl-a = %+v, %v", a1, err)
	}
	b1, err := n.op.Service(ctx, "inl-b")
	if err != nil {
		t.Fatal(err)
	}
	wantText := func(mark string) {
		t.Helper()
		fr, err := n.op.FireFlow(ctx, "inl", api.FlowFireRequest{Message: json.RawMessage(`{"s":"x"}`), Wait: "60s"})
		if err != nil || fr.Outcome != "ok" || len(fr.Steps) != 2 {
			t.Fatalf("fire = %+v, %v", fr, err)
		}
		last := fr.Steps[1]
		r, err := n.op.Run(ctx, last.Service, last.Run)
		var got struct{ S string }
		if err != nil || r.Output == nil || len(r.Output.Emit) != 1 || json.Unmarshal(r.Output.Emit[0].Message, &got) != nil || got.S != "x-js-"+mark {
			t.Fatalf("b's run = %+v (%s), %v; want x-js-%s", r.Output, got.S, err, mark)
		}
	}
	wantText("py")

	// b's code changes: a new version of inl-b, inl-a as it was.
	if _, err := n.op.ApplyFlow(ctx, yaml, []byte(inlineFlow("1.1.0", "py2")), false); err != nil {
		t.Fatal(err)
	}
	wantText("py2")
	if a2, err := n.op.Service(ctx, "inl-a"); err != nil || a2.Version != a1.Version || a2.Digest != a1.Digest {
		t.Errorf("inl-a after b changed = %+v, %v; want %s unchanged", a2, err, a1.Version)
	}
	if b2, err := n.op.Service(ctx, "inl-b"); err != nil || b2.Version == b1.Version {
		t.Errorf("inl-b after its code changed = %+v, %v; want a new version", b2, err)
	}

	// A version without b: inl-b goes.
	onlyA := "id: inl\nversion: 1.2.0\nmodules:\n  - id: a\n    language: node\n    code: |\n      exports.decide = (ctx) => ({ emit: [{ port: 'out', message: { s: ctx.message.s + '-js' } }] });\n"
	if _, err := n.op.ApplyFlow(ctx, yaml, []byte(onlyA), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.Service(ctx, "inl-b"); status(err) != 404 {
		t.Errorf("inl-b after a version without b = %v, want 404", err)
	}

	// A service that is not the flow's holds the name another flow's
	// inline module would take: the start is refused and it stays.
	if _, err := n.op.Submit(ctx, pack(t, echoService(t, "other-a"))); err != nil {
		t.Fatal(err)
	}
	other := "id: other\nversion: 1.0.0\nmodules:\n  - {id: a, language: python, code: 'def handle(i): return {}'}\n"
	if _, err := n.op.ApplyFlow(ctx, yaml, []byte(other), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "other"); status(err) != 409 || !strings.Contains(err.Error(), "other-a, which is another service") {
		t.Errorf("start other = %v, want 409 naming other-a", err)
	}
	if s, err := n.op.Service(ctx, "other-a"); err != nil || !strings.Contains(string(s.Manifest), `"wasm"`) {
		t.Errorf("other-a after the refused start = %+v, %v; want the wasm service kept", s, err)
	}
	if f, err := n.op.Flow(ctx, "other"); err != nil || f.Running {
		t.Errorf("other after the refused start = %+v, %v; want not running", f, err)
	}

	if err := n.op.RemoveFlow(ctx, "inl"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.Service(ctx, "inl-a"); status(err) != 404 {
		t.Errorf("inl-a after the flow's removal = %v, want 404", err)
	}
}

// TestFlowInlineSubmitter: a submitter's inline module is its service,
// judged by the policy as its submissions are.
func TestFlowInlineSubmitter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	tok, err := n.op.CreateToken(ctx, "bob", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	bob := api.NewClient(n.Addr(), tok.Secret)
	doc := "id: bobs\nversion: 1.0.0\nmodules:\n  - {id: m, language: python, code: 'def decide(ctx): return {\"noop\": \"seen\"}'}\n"
	if _, err := bob.ApplyFlow(ctx, "application/yaml", []byte(doc), false); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.StartFlow(ctx, "bobs"); err != nil {
		t.Fatal(err)
	}
	s, err := bob.Service(ctx, "bobs-m")
	if err != nil || s.Owner != "bob" {
		t.Fatalf("bobs-m = %+v, %v; want bob's", s, err)
	}
	if fr, err := bob.FireFlow(ctx, "bobs", api.FlowFireRequest{Message: json.RawMessage(`{}`), Wait: "60s"}); err != nil || fr.Outcome != "ok" {
		t.Fatalf("fire = %+v, %v", fr, err)
	}
}
