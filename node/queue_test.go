package node_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/decision"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/policy"
)

// named is the greeter example renamed, at version, packed.
func named(t *testing.T, name, version string) []byte {
	t.Helper()
	dir := example(t, "greeter")
	setManifest(t, dir, func(s string) string {
		s = strings.Replace(s, "name: greeter", "name: "+name, 1)
		return strings.Replace(s, "version: 1.0.0", "version: "+version, 1)
	})
	return pack(t, dir)
}

func withAdmission(queue int, wait string) func(*node.Config) {
	return func(c *node.Config) { c.Admission = node.AdmissionConfig{Queue: queue, Wait: wait} }
}

type submitted struct {
	res api.SubmitResult
	err error
}

// submitAsync submits in the background; the answer arrives on the
// channel.
func submitAsync(ctx context.Context, n *testNode, data []byte, origin decision.OriginClaim) <-chan submitted {
	ch := make(chan submitted, 1)
	go func() {
		res, err := n.op.SubmitWith(ctx, data, api.SubmitOptions{Origin: origin})
		ch <- submitted{res, err}
	}()
	return ch
}

// waitQueue waits until want submissions wait in n's admission queue.
func waitQueue(t *testing.T, n *testNode, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for node.AdmissionWaiting(n.Node) != want {
		if time.Now().After(deadline) {
			t.Fatalf("admission queue holds %d, want %d", node.AdmissionWaiting(n.Node), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func serviceNames(t *testing.T, n *testNode) []string {
	t.Helper()
	svcs, err := n.op.Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range svcs {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return names
}

// TestAdmissionQueuePrefers: on a node at capacity (limits.services 1), a
// submission from an unlisted origin waits; a preferred origin's
// submission, made after it, waits ahead of it; removing the admitted
// service admits the preferred one first, the other still waits, and is
// admitted when another service is removed. Nothing admitted is evicted.
func TestAdmissionQueuePrefers(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, withPolicy(t, `
origins: {prefer: [{kind: symbiote, id: fast, min_stake: 1}]}
limits: {services: 1}
`), withAdmission(8, "20s"))
	first, other, pref := named(t, "first", "1.0.0"), named(t, "other", "1.0.0"), named(t, "pref", "1.0.0")
	if _, err := n.op.Submit(ctx, first); err != nil {
		t.Fatalf("the first service, naming no origin, under a preference: %v", err)
	}

	otherDone := submitAsync(ctx, n, other, decision.OriginClaim{Kind: "hostchain", ID: "eth"})
	waitQueue(t, n, 1)
	prefDone := submitAsync(ctx, n, pref, decision.OriginClaim{Kind: "symbiote", ID: "fast", Stake: 1})
	waitQueue(t, n, 2)

	// An upgrade of the admitted service never waits.
	if _, err := n.op.Submit(ctx, named(t, "first", "1.1.0")); err != nil {
		t.Fatalf("an upgrade at capacity: %v", err)
	}
	if got := serviceNames(t, n); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("services while two wait = %v, want [first]: nothing queued is admitted, nothing admitted evicted", got)
	}

	if err := n.op.Remove(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-prefDone:
		if r.err != nil {
			t.Fatalf("the preferred submission: %v", r.err)
		}
	case r := <-otherDone:
		t.Fatalf("the other submission was answered first (%v), before the preferred one queued after it", r.err)
	case <-time.After(15 * time.Second):
		t.Fatal("no waiter admitted after a removal")
	}
	if got := serviceNames(t, n); !slices.Equal(got, []string{"pref"}) {
		t.Fatalf("services = %v, want [pref]", got)
	}
	select {
	case r := <-otherDone:
		t.Fatalf("the other submission was answered while the node is full: %v", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	waitQueue(t, n, 1)

	if err := n.op.Remove(ctx, "pref"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-otherDone:
		if r.err != nil {
			t.Fatalf("the other submission after a second removal: %v", r.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the other submission was not admitted after a second removal")
	}
	if got := serviceNames(t, n); !slices.Equal(got, []string{"other"}) {
		t.Fatalf("services = %v, want [other]", got)
	}
	waitQueue(t, n, 0)
}

// TestAdmissionQueueRefuses: a waiter whose time is up, one that finds the
// queue full and one whose request is cancelled leave the queue, store
// nothing, and the first two are answered 503 with Retry-After and the
// reason.
func TestAdmissionQueueRefuses(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, withPolicy(t, "limits: {services: 1}\n"), withAdmission(1, "2s"))
	if _, err := n.op.Submit(ctx, named(t, "first", "1.0.0")); err != nil {
		t.Fatal(err)
	}
	late, later := named(t, "late", "1.0.0"), named(t, "later", "1.0.0")
	before := snapshotData(t, n)

	lateDone := submitAsync(ctx, n, late, decision.OriginClaim{})
	waitQueue(t, n, 1)
	_, err := n.op.Submit(ctx, later)
	var ae *api.Error
	if status(err) != 503 || !errors.As(err, &ae) || ae.RetryAfter < 1 || !strings.Contains(err.Error(), "node at capacity: 1 of 1 services; the admission queue is full (1 waiting)") {
		t.Fatalf("a submission finding the queue full: %v", err)
	}
	r := <-lateDone
	if status(r.err) != 503 || !errors.As(r.err, &ae) || ae.RetryAfter < 1 ||
		!strings.Contains(r.err.Error(), "node at capacity: 1 of 1 services; waited ") || !strings.Contains(r.err.Error(), " in the admission queue behind 0 others") {
		t.Fatalf("a waiter whose time is up: %v", r.err)
	}
	waitQueue(t, n, 0)

	// A request cancelled while it waits leaves the queue.
	cctx, cancel := context.WithCancel(ctx)
	cancelled := submitAsync(cctx, n, later, decision.OriginClaim{})
	waitQueue(t, n, 1)
	cancel()
	if r := <-cancelled; r.err == nil {
		t.Fatal("a cancelled submission was answered without error")
	}
	waitQueue(t, n, 0)

	if got := serviceNames(t, n); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("services = %v, want [first]", got)
	}
	if after := snapshotData(t, n); after != before {
		t.Fatalf("refused waiters changed the data dir:\n%s\n%s", before, after)
	}
}

// TestKlyntarSeedAdmitsNoOrigin: a node running the seed's own runner
// configuration, imported, admits a service that names no origin:
// PREFER_SYMBIOTES and PREFER_HOSTCHAINS are a preference, not an
// allowlist, and the decision says so.
func TestKlyntarSeedAdmitsNoOrigin(t *testing.T) {
	ctx := context.Background()
	seed, err := os.ReadFile(filepath.Join("..", "policy", "testdata", "klyntar", "runner.json"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := policy.ImportKlyntar(seed)
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, func(c *node.Config) { c.Policy = k.Policy })
	dir := example(t, "greeter")
	// The seed's KEYWORDS: a service must carry one of them.
	setManifest(t, dir, func(s string) string { return strings.Replace(s, "keywords: [demo]", "keywords: [api]", 1) })
	res, err := n.op.Submit(ctx, pack(t, dir))
	if err != nil {
		t.Fatalf("a service naming no origin under the seed's config: %v", err)
	}
	var origins *api.Reason
	for i, r := range res.Service.Decision.Reasons {
		if r.Rule == "origins" {
			origins = &res.Service.Decision.Reasons[i]
		}
	}
	if res.Service.Decision.Verdict != "run" || origins == nil || !origins.OK || origins.Detail != "no origin named: not preferred; unlisted origins need min_stake 0" {
		t.Fatalf("decision %+v, origins reason %+v", res.Service.Decision, origins)
	}
}

// TestAdmissionConfigErrors: bad admission settings name their keys.
func TestAdmissionConfigErrors(t *testing.T) {
	_, err := node.ParseConfig([]byte("admission: {queue: -1, wait: 1h}\n"), false)
	for _, want := range []string{"admission.queue: must be from 0 to 4096", "admission.wait: must be a duration from 0s to 10m0s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseConfig = %v, want it to contain %q", err, want)
		}
	}
	if _, err := node.ParseConfig([]byte("admission: {queue: 2, wate: 1s}\n"), false); err == nil || !strings.Contains(err.Error(), `admission.wate: unknown field "wate"`) {
		t.Errorf("unknown admission key: %v", err)
	}
	if _, err := node.ParseConfig([]byte("policy: {limits: {services: -2}}\n"), false); err == nil || !strings.Contains(err.Error(), "policy.limits.services: must be from 0 to 1048576") {
		t.Errorf("negative limits.services: %v", err)
	}
}

// TestAdmissionQueueUnusedSlotPassesOn: a waiter granted a slot that it
// does not use (the same service was admitted meanwhile, so its
// submission is answered unchanged) passes the slot on at once to the
// next waiter, which is admitted rather than answered 503 when its wait
// is up.
func TestAdmissionQueueUnusedSlotPassesOn(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, withPolicy(t, "limits: {services: 2}\n"), withAdmission(8, "6s"))
	for _, name := range []string{"first", "second"} {
		if _, err := n.op.Submit(ctx, named(t, name, "1.0.0")); err != nil {
			t.Fatal(err)
		}
	}
	dup := named(t, "dup", "1.0.0")
	aDone := submitAsync(ctx, n, dup, decision.OriginClaim{})
	waitQueue(t, n, 1)
	bDone := submitAsync(ctx, n, dup, decision.OriginClaim{})
	waitQueue(t, n, 2)
	cDone := submitAsync(ctx, n, named(t, "other", "1.0.0"), decision.OriginClaim{})
	waitQueue(t, n, 3)

	// Two slots free up, promised to the two submissions of dup; one of
	// them admits it, the other finds it admitted and uses no slot.
	for _, name := range []string{"first", "second"} {
		if err := n.op.Remove(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, ch := range []<-chan submitted{aDone, bDone} {
		if r := <-ch; r.err != nil {
			t.Fatalf("a submission of dup: %v", r.err)
		}
	}
	// Left asleep, it would be answered 503 when its wait is up.
	select {
	case r := <-cDone:
		if r.err != nil {
			t.Fatalf("the third waiter, with a slot left unused: %v", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the third waiter was not answered")
	}
	if got := serviceNames(t, n); !slices.Equal(got, []string{"dup", "other"}) {
		t.Fatalf("services = %v, want [dup other]", got)
	}
	waitQueue(t, n, 0)
}
