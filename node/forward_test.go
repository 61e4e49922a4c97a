package node_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/policy"
)

// TestForwarding: node A's policy refuses greeter and forwards it; the
// first peer A lists does not answer and is skipped, saying why; B's
// policy admits greeter and runs it, owned by A (B's submitter token for
// A) with A's receipt on its record; A records the forward with both
// signed decisions, each verifying under its node's key. The redirect
// depth A gives (1) leaves B none: heartbeat, which B refuses too, is
// refused there with the path shown, and A records B's signed refusal.
// Receipts that are forged, altered, for other code or for a path that
// already holds B are refused by B, which registers nothing.
func TestForwarding(t *testing.T) {
	ctx := context.Background()
	greeter, heartbeat := example(t, "greeter"), heartbeatEvery(t, "")
	refuse := func(names ...string) []policy.Rule {
		var rs []policy.Rule
		for _, name := range names {
			rs = append(rs, policy.Rule{Name: "not-" + name, Expr: `service.name != "` + name + `"`, Message: name + " does not run here"})
		}
		return rs
	}
	b := startNode(t, func(c *node.Config) {
		c.Name = "b"
		c.Policy.Rules = refuse("heartbeat")
		c.Policy.Peers = []string{"http://127.0.0.1:1"} // never reached: no depth is left for it
		c.Policy.RedirectDepth = 3
	})
	tok, err := b.op.CreateToken(ctx, "node-a", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + freeAddrs(t, 1)[0]
	a := startNode(t, func(c *node.Config) {
		c.Name = "a"
		c.Policy.Rules = refuse("greeter", "heartbeat")
		c.Policy.Peers = []string{dead, b.URL()}
		c.Policy.RedirectDepth = 1
		c.Forwarding.Peers = []node.PeerConfig{{URL: dead, Token: "unused"}, {URL: b.URL(), Token: tok.Secret}}
	})
	aInfo, err := a.op.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bInfo, err := b.op.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}

	res, err := a.op.Submit(ctx, pack(t, greeter))
	if err != nil {
		t.Fatalf("submit greeter to a: %v", err)
	}
	f := res.Forward
	if f == nil || f.Outcome != api.ForwardRun || f.Peer != b.URL() || len(f.Skipped) != 1 || !strings.HasPrefix(f.Skipped[0], dead+": ") {
		t.Fatalf("forward = %+v; want run on b after skipping %s", f, dead)
	}
	if res.Service.Name != "greeter" || res.Service.Owner != "node-a" {
		t.Errorf("answer's service = %s owned by %q; want b's greeter owned by node-a", res.Service.Name, res.Service.Owner)
	}
	if _, err := a.op.Service(ctx, "greeter"); status(err) != 404 {
		t.Errorf("a lists greeter (%v); it runs on b", err)
	}
	onB, err := b.op.Service(ctx, "greeter")
	if err != nil {
		t.Fatal(err)
	}
	if r := onB.Forwarded; r == nil || attest.VerifyReceipt(*r) != nil || r.NodeKey != aInfo.NodeKey || r.Verdict != "forward" ||
		len(r.Path) != 1 || r.Path[0] != a.URL() || r.Submitter != "operator" || r.ForwardTo != b.URL() || r.RedirectDepth != 0 {
		t.Errorf("b's greeter came with %+v; want a's signed forward to b, path [a], submitted by operator, depth 0", r)
	}
	if run, err := b.op.Fire(ctx, "greeter", json.RawMessage(`{"name": "forwarded"}`)); err != nil || run.Outcome != "ok" {
		t.Errorf("fire greeter on b = %+v, %v", run, err)
	}
	fs, err := a.op.Forwards(ctx, 0)
	if err != nil || len(fs) != 1 {
		t.Fatalf("a's forwards = %+v, %v; want one", fs, err)
	}
	digest, err := archive.DigestDir(greeter)
	if err != nil {
		t.Fatal(err)
	}
	rec := fs[0]
	if rec.Outcome != api.ForwardRun || rec.Digest != digest || rec.Submitter != "operator" ||
		rec.Receipt == nil || attest.VerifyReceipt(*rec.Receipt) != nil || rec.Receipt.NodeKey != aInfo.NodeKey || rec.Receipt.ServiceDigest != digest ||
		rec.PeerReceipt == nil || attest.VerifyReceipt(*rec.PeerReceipt) != nil || rec.PeerReceipt.NodeKey != bInfo.NodeKey || rec.PeerReceipt.Verdict != "run" {
		t.Errorf("a's forward record = %+v; want both signed decisions, verifying under a's and b's keys", rec)
	}

	// Depth: a gives 1, so b gets 0 and cannot forward heartbeat on.
	_, err = a.op.Submit(ctx, pack(t, heartbeat))
	if status(err) != 422 || !strings.Contains(err.Error(), "no redirect depth left (it came through "+a.URL()+")") {
		t.Errorf("submit heartbeat to a = %d %#v; want 422, b has no redirect depth left", status(err), err)
	}
	fs, err = a.op.Forwards(ctx, 1)
	if err != nil || len(fs) != 1 || fs[0].Service != "heartbeat" || fs[0].Outcome != api.ForwardRejected ||
		fs[0].PeerReceipt == nil || attest.VerifyReceipt(*fs[0].PeerReceipt) != nil || fs[0].PeerReceipt.Verdict != "reject" || fs[0].PeerReceipt.NodeKey != bInfo.NodeKey {
		t.Errorf("a's newest forward = %+v, %v; want heartbeat rejected by b with b's signed refusal", fs, err)
	}
	if _, err := b.op.Service(ctx, "heartbeat"); status(err) != 404 {
		t.Errorf("b registered heartbeat (%v)", err)
	}

	// Receipts b must refuse, sent as a would with b's token for a.
	hbArchive := pack(t, heartbeat)
	hbDigest, err := archive.DigestDir(heartbeat)
	if err != nil {
		t.Fatal(err)
	}
	_, key := attest.GenerateKey()
	hb, err := manifest.Load(heartbeat)
	if err != nil {
		t.Fatal(err)
	}
	good := attest.Receipt{Service: "heartbeat", Version: hb.Version, ServiceDigest: hbDigest, Verdict: "forward",
		ForwardTo: b.URL(), RedirectDepth: 1, Path: []string{a.URL()}, Submitter: "mallory", DecidedAt: rec.Receipt.DecidedAt}
	asA := api.NewClient(b.URL(), tok.Secret)
	for _, c := range []struct {
		name   string
		r      func() attest.Receipt
		status int
		says   string
	}{
		{"altered after signing", func() attest.Receipt { r := attest.SignReceipt(key, good); r.RedirectDepth = 9; return r }, 400, "does not verify"},
		{"signature of another key", func() attest.Receipt {
			r := attest.SignReceipt(key, good)
			r.NodeKey = aInfo.NodeKey
			return r
		}, 400, "does not verify"},
		{"other code", func() attest.Receipt { r := good; r.ServiceDigest = digest; return attest.SignReceipt(key, r) }, 400, "is for code"},
		{"to another node", func() attest.Receipt { r := good; r.ForwardTo = a.URL(); return attest.SignReceipt(key, r) }, 400, "not to this node"},
		{"not a forward", func() attest.Receipt { r := good; r.Verdict = "run"; return attest.SignReceipt(key, r) }, 400, "not forward"},
		{"a loop", func() attest.Receipt {
			r := good
			r.Path = []string{a.URL(), b.URL()}
			return attest.SignReceipt(key, r)
		}, 409, "forwarding loop"},
	} {
		r := c.r()
		_, err := asA.SubmitWith(ctx, hbArchive, api.SubmitOptions{Forwarded: &r})
		if status(err) != c.status || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: submit to b = %v; want %d saying %q", c.name, err, c.status, c.says)
		}
	}
	if svcs, err := b.op.Services(ctx); err != nil || len(svcs) != 1 {
		t.Errorf("b's services after the refused receipts = %d, %v; want greeter alone", len(svcs), err)
	}
}

// TestAdvertising: node A runs greeter and price-watch and advertises
// both to B (policy.advertise); B judges each by its own policy: it runs
// greeter too, owned by A, with A's signed offer on its record, and
// refuses price-watch. A records both offers with B's signed answers; a
// service A does not advertise goes nowhere.
func TestAdvertising(t *testing.T) {
	ctx := context.Background()
	greeter, priceWatch, heartbeat := example(t, "greeter"), example(t, "price-watch"), heartbeatEvery(t, "")
	b := startNode(t, func(c *node.Config) {
		c.Name = "b"
		c.Policy.Rules = []policy.Rule{{Name: "not-price-watch", Expr: `service.name != "price-watch"`, Message: "price-watch does not run here"}}
	})
	tok, err := b.op.CreateToken(ctx, "node-a", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	a := startNode(t, func(c *node.Config) {
		c.Name = "a"
		c.Policy.Advertise = policy.Advertise{Services: []string{"greeter", "price-*"}, To: []string{b.URL()}}
		c.Forwarding.Peers = []node.PeerConfig{{URL: b.URL(), Token: tok.Secret}}
	})
	aInfo, err := a.op.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bInfo, err := b.op.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{greeter, priceWatch, heartbeat} {
		if _, err := a.op.Submit(ctx, pack(t, dir)); err != nil {
			t.Fatalf("submit %s to a: %v", dir, err)
		}
	}
	var fs []api.Forward
	for deadline := time.Now().Add(30 * time.Second); len(fs) < 2; time.Sleep(100 * time.Millisecond) {
		if fs, err = a.op.Forwards(ctx, 10); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("a's forwards after 30 s: %+v", fs)
		}
	}
	time.Sleep(500 * time.Millisecond) // heartbeat's offer, were there one, would be in by now
	if fs, err = a.op.Forwards(ctx, 10); err != nil || len(fs) != 2 {
		t.Fatalf("a's forwards = %+v, %v; want greeter's and price-watch's offers alone", fs, err)
	}
	by := map[string]api.Forward{}
	for _, f := range fs {
		by[f.Service] = f
	}
	g, pw := by["greeter"], by["price-watch"]
	if g.Kind != api.KindAdvertise || g.Outcome != api.ForwardRun || g.Peer != b.URL() ||
		g.Receipt == nil || attest.VerifyReceipt(*g.Receipt) != nil || g.Receipt.NodeKey != aInfo.NodeKey || !g.Receipt.Advertise || g.Receipt.Verdict != "run" ||
		g.PeerReceipt == nil || attest.VerifyReceipt(*g.PeerReceipt) != nil || g.PeerReceipt.NodeKey != bInfo.NodeKey || g.PeerReceipt.Verdict != "run" {
		t.Errorf("greeter's offer = %+v; want run on b, a's signed offer and b's signed decision", g)
	}
	if pw.Kind != api.KindAdvertise || pw.Outcome != api.ForwardRejected || pw.PeerReceipt == nil || pw.PeerReceipt.Verdict != "reject" || attest.VerifyReceipt(*pw.PeerReceipt) != nil {
		t.Errorf("price-watch's offer = %+v; want refused by b with b's signed refusal", pw)
	}
	onB, err := b.op.Service(ctx, "greeter")
	if err != nil || onB.Owner != "node-a" || onB.Forwarded == nil || !onB.Forwarded.Advertise || onB.Forwarded.NodeKey != aInfo.NodeKey {
		t.Fatalf("b's greeter = %+v, %v; want it owned by node-a with a's offer", onB, err)
	}
	if run, err := b.op.Fire(ctx, "greeter", json.RawMessage(`{"name": "advertised"}`)); err != nil || run.Outcome != "ok" {
		t.Errorf("fire greeter on b = %+v, %v", run, err)
	}
	if run, err := a.op.Fire(ctx, "greeter", json.RawMessage(`{"name": "here"}`)); err != nil || run.Outcome != "ok" {
		t.Errorf("fire greeter on a = %+v, %v: a runs it too", run, err)
	}
	for _, name := range []string{"price-watch", "heartbeat"} {
		if _, err := b.op.Service(ctx, name); status(err) != 404 {
			t.Errorf("b has %s (%v)", name, err)
		}
	}
}
