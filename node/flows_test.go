package node_test

import (
	"context"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
)

// TestFlowsAPI checks the runner API's flows on a real node: a flow of two
// wasm services is created (201), applied again unchanged, updated with a
// dry run first (changes listed, nothing written) and then for real; a
// flow breaking many rules gets every problem in one 400 and changes
// nothing; JSON and TOML documents are read as YAML is, another media type
// is refused; a submitter uses only its own services, sees and removes
// only its own flows and cannot take an id in use; listings filter by
// runtime; removal is final.
func TestFlowsAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	for _, name := range []string{"parse", "store"} {
		if _, err := n.op.Submit(ctx, pack(t, echoService(t, name))); err != nil {
			t.Fatal(err)
		}
	}
	const yaml = "application/yaml"
	v1 := "id: orders\nversion: 1.0.0\nmodules:\n  - {id: p, service: parse}\n  - {id: s, service: store, config: {table: t}}\nwires:\n  - {from: p, to: s}\n"
	a, err := n.op.ApplyFlow(ctx, yaml, []byte(v1), false)
	if err != nil || !a.Created || a.Unchanged || a.Flow.Version != "1.0.0" || len(a.Flow.Modules) != 2 || a.Flow.Modules[0].Runtime != "wasm" ||
		len(a.Flow.Wires) != 1 || a.Flow.Wires[0].From != "p:out" || a.Flow.Wires[0].To != "s:in" || a.Flow.Owner != "operator" {
		t.Fatalf("apply v1 = %+v, %v", a, err)
	}
	if a, err := n.op.ApplyFlow(ctx, yaml, []byte(v1), false); err != nil || !a.Unchanged || a.Created {
		t.Errorf("apply v1 again = %+v, %v; want unchanged", a, err)
	}

	v2 := "id: orders\nversion: 1.1.0\nmodules:\n  - {id: p, service: parse}\n  - {id: s, service: store, config: {table: u}}\n  - {id: q, language: python, code: 'def handle(i): return {}'}\n" +
		"wires:\n  - {from: p, to: q}\n  - {from: q, to: s}\n"
	want := []string{"module s changed", "module q added", "wire p:out → q:in added", "wire q:out → s:in added", "wire p:out → s:in removed", "version 1.0.0 → 1.1.0"}
	dry, err := n.op.ApplyFlow(ctx, yaml, []byte(v2), true)
	if err != nil || !dry.DryRun || dry.Created || strings.Join(dry.Changes, "; ") != strings.Join(want, "; ") {
		t.Fatalf("apply v2 --dry-run = %+v, %v; want changes %q", dry, err, want)
	}
	if f, err := n.op.Flow(ctx, "orders"); err != nil || f.Version != "1.0.0" {
		t.Fatalf("after a dry run: %+v, %v; want v1 kept", f, err)
	}
	if a, err := n.op.ApplyFlow(ctx, yaml, []byte(v2), false); err != nil || a.Created || a.DryRun || len(a.Changes) != len(want) || a.Flow.Version != "1.1.0" {
		t.Fatalf("apply v2 = %+v, %v", a, err)
	}

	// Every problem at once, nothing changed.
	bad := "id: orders\nversion: '2.0'\nmodules:\n  - {id: p, service: parse}\n  - {id: p, service: nope}\n  - {id: r, language: cobol, code: x, runtime: moon}\n" +
		"wires:\n  - {from: p, to: zz}\n  - {from: 'p:nope', to: r}\n  - {from: r, to: p}\n"
	_, err = n.op.ApplyFlow(ctx, yaml, []byte(bad), false)
	if status(err) != 400 {
		t.Fatalf("a bad flow = %v, want 400", err)
	}
	for _, w := range []string{"version: must be MAJOR.MINOR.PATCH", "modules[1].id: duplicate of modules[0]", `modules[1].service: no service named "nope"`,
		`modules[2].language: no runtime on this node runs "cobol"`, `modules[2].runtime: no runtime "moon"`, `wires[0].to: no module "zz"`,
		`wires[1].from: module p has no output port "nope"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the bad flow's answer lacks %q:\n%v", w, err)
		}
	}
	if _, err := n.op.ApplyFlow(ctx, yaml, []byte("id: x\nversion: 1.0.0\nmodules: [{id: a, servce: parse}]\n"), false); status(err) != 400 || !strings.Contains(err.Error(), `modules[0].servce: unknown field "servce" (did you mean "service"?)`) {
		t.Errorf("a typo = %v", err)
	}
	if f, err := n.op.Flow(ctx, "orders"); err != nil || f.Version != "1.1.0" {
		t.Errorf("after bad flows: %+v, %v; want v2 kept", f, err)
	}

	// JSON and TOML; another media type.
	if a, err := n.op.ApplyFlow(ctx, "application/json", []byte(`{"id":"j","version":"1.0.0","modules":[{"id":"a","service":"parse"}]}`), false); err != nil || !a.Created {
		t.Errorf("a JSON flow = %+v, %v", a, err)
	}
	if a, err := n.op.ApplyFlow(ctx, "application/toml", []byte("id = \"tm\"\nversion = \"1.0.0\"\n[[modules]]\nid = \"a\"\nservice = \"store\"\n"), false); err != nil || !a.Created {
		t.Errorf("a TOML flow = %+v, %v", a, err)
	}
	if _, err := n.op.ApplyFlow(ctx, "text/plain", []byte(v1), false); status(err) != 415 {
		t.Errorf("a text/plain flow = %v, want 415", err)
	}

	// Listings, by runtime.
	all, err := n.op.Flows(ctx, "")
	if err != nil || len(all) != 3 || all[0].ID != "j" || all[1].ID != "orders" || all[2].ID != "tm" {
		t.Fatalf("flows = %+v, %v", all, err)
	}
	if py, err := n.op.Flows(ctx, "process/python"); err != nil || len(py) != 1 || py[0].ID != "orders" {
		t.Errorf("flows on process/python = %+v, %v; want orders (its inline module)", py, err)
	}
	if none, err := n.op.Flows(ctx, "docker/node"); err != nil || len(none) != 0 {
		t.Errorf("flows on docker/node = %+v, %v; want none", none, err)
	}

	// A submitter: its own services and flows only.
	tok, err := n.op.CreateToken(ctx, "bob", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	bob := api.NewClient(n.Addr(), tok.Secret)
	if _, err := bob.Submit(ctx, pack(t, echoService(t, "bobs"))); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.ApplyFlow(ctx, yaml, []byte("id: b\nversion: 1.0.0\nmodules: [{id: a, service: parse}]\n"), false); status(err) != 400 || !strings.Contains(err.Error(), `no service named "parse"`) {
		t.Errorf("bob's flow of the operator's service = %v, want 400", err)
	}
	if a, err := bob.ApplyFlow(ctx, yaml, []byte("id: b\nversion: 1.0.0\nmodules: [{id: a, service: bobs}]\n"), false); err != nil || a.Flow.Owner != "bob" {
		t.Errorf("bob's flow of his service = %+v, %v", a, err)
	}
	if _, err := bob.ApplyFlow(ctx, yaml, []byte("id: orders\nversion: 9.0.0\nmodules: [{id: a, service: bobs}]\n"), false); status(err) != 409 {
		t.Errorf("bob taking the id orders = %v, want 409", err)
	}
	if fs, err := bob.Flows(ctx, ""); err != nil || len(fs) != 1 || fs[0].ID != "b" {
		t.Errorf("bob's flows = %+v, %v", fs, err)
	}
	if _, err := bob.Flow(ctx, "orders"); status(err) != 404 {
		t.Errorf("bob reading orders = %v, want 404", err)
	}
	if err := bob.RemoveFlow(ctx, "orders"); status(err) != 404 {
		t.Errorf("bob removing orders = %v, want 404", err)
	}

	if err := n.op.RemoveFlow(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.Flow(ctx, "orders"); status(err) != 404 {
		t.Errorf("orders after rm = %v, want 404", err)
	}
	if err := n.op.RemoveFlow(ctx, "orders"); status(err) != 404 {
		t.Errorf("rm orders again = %v, want 404", err)
	}
}
