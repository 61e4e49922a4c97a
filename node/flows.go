package node

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/flow"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/strictdoc"
	"github.com/andromeda-runner/andromeda/trigger"
)

// Flows (the runner API's addOrUpdateFlow, listFlowsForRuntime and
// removeFlow): the node keeps the flows applied to it, each checked
// against the services its author may use and the runtimes the node has,
// in the flows bucket. flowapi.go and flowrun.go run them.

// flowFormats are the formats a flow document may be written in.
var flowFormats = map[string]strictdoc.Format{"yaml": strictdoc.YAML, "json": strictdoc.JSON, "toml": strictdoc.TOML}

// ApplyFlow implements server.FlowBackend: parse the document, check it
// against the services p may use (the operator's: all; a submitter's: its
// own) and the node's enabled runtimes, and store it unless it is the one
// applied already or dryRun. Every problem comes back at once (400); a
// flow of another owner is not found for a submitter; nothing is written
// on any error.
func (n *Node) ApplyFlow(ctx context.Context, p server.Principal, format string, doc []byte, dryRun bool) (api.FlowApplied, error) {
	f, ok := flowFormats[format]
	if !ok {
		return api.FlowApplied{}, server.Errorf(server.ErrInvalid, "format: must be yaml, json or toml, got %q", format)
	}
	fl, err := flow.Parse(f, doc)
	if err != nil {
		return api.FlowApplied{}, invalidFlow(err)
	}
	if a, done, err := forwardFlow[api.FlowApplied](ctx, n, p, flowCall{Op: "apply", ID: fl.ID, Format: format, Doc: doc, DryRun: dryRun}); done {
		return a, err
	}
	cat, err := n.flowCatalog(ctx, p)
	if err != nil {
		return api.FlowApplied{}, err
	}
	if err := flow.Check(fl, cat.Catalog); err != nil {
		return api.FlowApplied{}, invalidFlow(err)
	}
	body, err := json.Marshal(fl)
	if err != nil {
		return api.FlowApplied{}, fmt.Errorf("encode flow %s: %w", fl.ID, err)
	}
	sum := sha256.Sum256(body)
	rec := store.FlowRecord{ID: fl.ID, Version: fl.Version, Owner: p.Name, Digest: "sha256:" + hex.EncodeToString(sum[:]),
		Applied: time.Now().UTC(), Flow: body}

	n.flowsMu.Lock()
	defer n.flowsMu.Unlock()
	old, err := n.store.Flow(ctx, fl.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return api.FlowApplied{}, err
	case !p.Operator() && old.Owner != p.Name:
		// Another owner's flow: a submitter does not learn it exists.
		return api.FlowApplied{}, server.Errorf(server.ErrConflict, "flow %s: the id is taken; choose another", fl.ID)
	default:
		rec.Owner = old.Owner // the operator updating a submitter's flow keeps its owner
		rec.Running, rec.Node = old.Running, old.Node
		for _, b := range old.Breakpoints { // those at modules the new version keeps
			if slices.ContainsFunc(fl.Modules, func(m flow.Module) bool { return m.ID == b }) {
				rec.Breakpoints = append(rec.Breakpoints, b)
			}
		}
	}
	a := api.FlowApplied{DryRun: dryRun, Created: old.ID == ""}
	var was *flow.Flow // the version applied before
	if old.ID != "" {
		if old.Digest == rec.Digest {
			a.Unchanged = true
			a.Flow, err = n.apiFlow(old, cat)
			return a, err
		}
		was = &flow.Flow{}
		if err := json.Unmarshal(old.Flow, was); err != nil {
			return api.FlowApplied{}, fmt.Errorf("flow %s: the stored version does not decode: %w", fl.ID, store.ErrDamaged)
		}
		a.Changes = flowChanges(was, fl)
		if err := n.deadLetterChanges(ctx, was, fl, &a); err != nil {
			return api.FlowApplied{}, err
		}
	}
	// In a cluster a running flow runs on its node; a call about it made
	// elsewhere reaches this point only when that node is not up (lost,
	// left, draining) or the flow was given up (no node). Started here it
	// would run on two nodes while its node is alive (cut off, or still
	// draining): the version is stored, and the node that takes the flow
	// over starts it. A flow given up is claimed by this write.
	startHere := rec.Running
	if n.place != nil && rec.Running && rec.Node != n.cfg.Name {
		if rec.Node == "" && !dryRun && n.reg.fresh() {
			rec.Node = n.cfg.Name
		} else {
			startHere = false
		}
	}
	if rec.Running {
		// A running flow's new version must be able to run, its inline
		// modules admitted as services.
		if err := n.runnable(ctx, rec.Owner, fl); err != nil {
			return api.FlowApplied{}, err
		}
		if !dryRun {
			if err := n.makeInline(ctx, rec.Owner, fl); err != nil {
				return api.FlowApplied{}, err
			}
		}
	}
	if !dryRun {
		rev, err := n.store.PutFlow(ctx, rec, old.Revision)
		if errors.Is(err, store.ErrConflict) {
			return api.FlowApplied{}, server.Errorf(server.ErrConflict, "flow %s was changed meanwhile; apply again", fl.ID)
		}
		if err != nil {
			return api.FlowApplied{}, err
		}
		rec.Revision = rev
		n.log.Info("flow applied", "flow", fl.ID, "version", fl.Version, "owner", rec.Owner, "created", a.Created, "changes", len(a.Changes))
		if !startHere && rec.Running {
			n.log.Info("flow applied while its node is not up: the node that takes it over runs this version", "flow", fl.ID, "node", rec.Node)
		}
		if startHere {
			// The new version takes over: the flow runs in flight end in
			// the old one, the messages queued run in the new one.
			n.stopFlow(fl.ID, true)
			if err := n.startFlow(ctx, rec); err != nil {
				return api.FlowApplied{}, fmt.Errorf("flow %s: version %s applied but not started (andromeda flow start %s): %w", fl.ID, fl.Version, fl.ID, err)
			}
		}
		if was != nil {
			n.removeInline(ctx, fl.ID, was, fl)
		}
	}
	a.Flow, err = n.apiFlow(rec, cat)
	return a, err
}

// deadLetterChanges adds to a, for each module of was that now removes,
// the messages waiting in the flow's queue aimed at it: the dead letters
// the update makes, unless they run before the new version takes over.
func (n *Node) deadLetterChanges(ctx context.Context, was, now *flow.Flow, a *api.FlowApplied) error {
	kept := map[string]bool{}
	for _, m := range now.Modules {
		kept[m.ID] = true
	}
	var removed []string
	for _, m := range was.Modules {
		if !kept[m.ID] {
			removed = append(removed, m.ID)
		}
	}
	if len(removed) == 0 {
		return nil
	}
	targets, err := n.store.QueuedFlowTargets(ctx, now.ID)
	if err != nil {
		return err
	}
	for _, m := range removed {
		if k := targets[m]; k > 0 {
			a.DeadLetters += k
			a.Changes = append(a.Changes, fmt.Sprintf("%d queued message(s) aimed at removed module %s: dead letters unless they run before the new version takes over", k, m))
		}
	}
	return nil
}

// invalidFlow is the 400 answer for a flow's problems.
func invalidFlow(err error) error {
	var errs flow.Errors
	if !errors.As(err, &errs) {
		return server.Errorf(server.ErrInvalid, "invalid flow: %v", err)
	}
	e := server.Errorf(server.ErrInvalid, "invalid flow: %d problem(s)", len(errs))
	for _, fe := range errs {
		e.Problems = append(e.Problems, fe.Error())
	}
	return e
}

// flowCatalog is what a flow of p's is checked against: the services p
// may use, each with the runtime it runs on, and the node's enabled
// runtimes.
type flowCatalog struct {
	flow.Catalog
	runtimeOf map[string]string // service → runtime id
}

func (n *Node) flowCatalog(ctx context.Context, p server.Principal) (flowCatalog, error) {
	cat := flowCatalog{Catalog: flow.Catalog{Services: map[string]flow.Service{}, Runtimes: map[string][]string{}}, runtimeOf: map[string]string{}}
	rts, err := n.Runtimes(ctx)
	if err != nil {
		return cat, err
	}
	for _, r := range rts {
		switch {
		case r.Kind == api.RuntimeBrowser:
			// A page runs the same module code as the Node.js shim, so
			// Node.js modules run there too; it is a placement while it is
			// away as well (its messages queue, or fail over).
			cat.Runtimes[r.ID] = append(cat.Runtimes[r.ID], r.Language, string(lang.Node))
		case r.Enabled && r.Language != "":
			cat.Runtimes[r.ID] = append(cat.Runtimes[r.ID], r.Language)
		}
	}
	n.mu.RLock()
	for name, d := range n.services {
		if !p.Operator() && d.rec.Owner != p.Name {
			continue
		}
		id, language := serviceRuntime(d.rec.Decision.Driver, d.manifest)
		cat.Services[name] = flow.Service{Language: language, Runtime: id}
		cat.runtimeOf[name] = id
	}
	n.mu.RUnlock()
	if n.place == nil {
		return cat, nil
	}
	// In a cluster a module may use a service placed on any node: it runs
	// there (cluster_flow.go).
	recs, err := n.store.Services(ctx)
	if err != nil {
		return cat, err
	}
	for _, rec := range recs {
		if _, ok := cat.Services[rec.Name]; ok || !p.Operator() && rec.Owner != p.Name {
			continue
		}
		if _, placed := n.place.get(rec.Name); !placed {
			continue
		}
		var m manifest.Service
		if err := json.Unmarshal(rec.Manifest, &m); err != nil {
			continue // not runnable as recorded; a module naming it is unknown
		}
		id, language := serviceRuntime(rec.Decision.Driver, &m)
		cat.Services[rec.Name] = flow.Service{Language: language, Runtime: id}
		cat.runtimeOf[rec.Name] = id
	}
	return cat, nil
}

// serviceRuntime is the runtime id (as GET /v1/runtimes lists it) and the
// language of a service, as a flow sees them: on the driver its decision
// picked (a process service may run on docker).
func serviceRuntime(driver string, m *manifest.Service) (id, language string) {
	switch d := cmp.Or(driver, string(m.Runtime.Driver)); {
	case d == string(manifest.DriverWasm):
		return "wasm", "wasm"
	case m.Runtime.Language == "":
		return d + "/image", "image"
	default:
		return d + "/" + m.Runtime.Language, m.Runtime.Language
	}
}

// apiFlow is a flow record as the API shows it, each module with the
// runtime it runs on.
func (n *Node) apiFlow(r store.FlowRecord, cat flowCatalog) (api.Flow, error) {
	fl, err := decodeFlow(r)
	if err != nil {
		return api.Flow{}, err
	}
	out := api.Flow{ID: r.ID, Version: r.Version, Owner: r.Owner, Digest: r.Digest, Applied: r.Applied, Document: r.Flow,
		Modules: []api.FlowModule{}, Wires: []api.FlowWire{}, Running: r.Running, Node: r.Node}
	e := n.runningFlow(r.ID)
	if e != nil {
		out.InFlight = e.inFlight()
	}
	if q, err := n.store.FlowQueueDepth(context.Background(), r.ID); err == nil {
		out.Queued = q
	}
	if c, err := n.store.FlowContextOf(context.Background(), r.ID); err == nil && len(c.Values) > 0 {
		out.Context = c.Values
	}
	for _, m := range fl.Modules {
		am := api.FlowModule{ID: m.ID, Service: m.Service, Language: m.Language, Runtime: m.Runtime}
		if m.OnBrowser() {
			am.WhenGone = cmp.Or(m.WhenGone, flow.WhenGoneQueue)
			am.Away = n.browser == nil || !n.browser.Connected(strings.TrimPrefix(m.Runtime, flow.BrowserPrefix))
		}
		am.Breakpoint = slices.Contains(r.Breakpoints, m.ID)
		if e != nil && e.modules[m.ID] != nil {
			am.Waiting = e.modules[m.ID].depth()
			am.Ran, am.Failed, am.LastMinute = e.modules[m.ID].rates(time.Now())
			if am.Breakpoint {
				for _, msg := range e.modules[m.ID].heldMessages(20) {
					am.Held = append(am.Held, api.FlowHeld{FlowRun: msg.fr.rec.ID, Message: msg.id, From: msg.fromRun, Input: orNull(msg.message)})
				}
			}
		}
		if m.Service == "" {
			am.Service = inlineName(r.ID, m.ID) // the service it runs as, once the flow started
		}
		if am.Runtime == "" {
			var ok bool
			if am.Runtime, ok = cat.runtimeOf[am.Service]; !ok && m.Service == "" {
				am.Runtime = "process/" + m.Language
			}
		}
		out.Modules = append(out.Modules, am)
	}
	for _, w := range fl.Wires {
		from, _ := flow.ParseEnd(w.From, flow.PortOut)
		to, _ := flow.ParseEnd(w.To, flow.PortIn)
		out.Wires = append(out.Wires, api.FlowWire{From: from.String(), To: to.String(), Loop: w.Loop})
	}
	var next []time.Time
	if e != nil {
		next = n.sched.Next(flowSchedPrefix + r.ID)
	}
	for i, t := range flowTriggerSpecs(&fl).all {
		ft := api.FlowTrigger{Name: trigger.Name(i), Kind: string(t.Kind), Module: fl.Triggers[i].Module}
		switch t.Kind {
		case manifest.KindCron:
			ft.On = cmp.Or(t.Schedule, "every "+t.Every.String())
			if i < len(next) && !next[i].IsZero() {
				ft.Next = &next[i]
			}
		case manifest.KindEvent:
			ft.On = "topic " + t.Topic
		case manifest.KindHTTP:
			ft.On = strings.Join(t.Methods, ",") + " " + t.Path
		}
		out.Triggers = append(out.Triggers, ft)
	}
	return out, nil
}

// flowChanges says what changed from was to now: modules added, removed
// and changed, wires added and removed, the context.
func flowChanges(was, now *flow.Flow) []string {
	var out []string
	old := map[string]flow.Module{}
	for _, m := range was.Modules {
		old[m.ID] = m
	}
	seen := map[string]bool{}
	for _, m := range now.Modules {
		seen[m.ID] = true
		o, ok := old[m.ID]
		switch {
		case !ok:
			out = append(out, "module "+m.ID+" added")
		case !reflect.DeepEqual(o, m):
			out = append(out, "module "+m.ID+" changed")
		}
	}
	for _, m := range was.Modules {
		if !seen[m.ID] {
			out = append(out, "module "+m.ID+" removed")
		}
	}
	wires := func(f *flow.Flow) []string {
		var ws []string
		for _, w := range f.Wires {
			from, _ := flow.ParseEnd(w.From, flow.PortOut)
			to, _ := flow.ParseEnd(w.To, flow.PortIn)
			s := from.String() + " → " + to.String()
			if w.Loop > 0 {
				s += fmt.Sprintf(" (loop %d)", w.Loop)
			}
			ws = append(ws, s)
		}
		return ws
	}
	ow, nw := wires(was), wires(now)
	for _, w := range nw {
		if !slices.Contains(ow, w) {
			out = append(out, "wire "+w+" added")
		}
	}
	for _, w := range ow {
		if !slices.Contains(nw, w) {
			out = append(out, "wire "+w+" removed")
		}
	}
	if !reflect.DeepEqual(was.Context, now.Context) {
		out = append(out, "context changed")
	}
	if wt, nt := mustJSON(was.Triggers), mustJSON(now.Triggers); string(wt) != string(nt) {
		out = append(out, fmt.Sprintf("triggers changed (%d → %d)", len(was.Triggers), len(now.Triggers)))
	}
	if was.Version != now.Version {
		out = append(out, "version "+was.Version+" → "+now.Version)
	}
	return out
}

// Flows implements server.FlowBackend: the flows p may see (a
// submitter: its own), with runtime only those with a module on it.
func (n *Node) Flows(ctx context.Context, p server.Principal, runtime string) ([]api.Flow, error) {
	recs, err := n.store.Flows(ctx)
	if err != nil {
		return nil, err
	}
	cat, err := n.flowCatalog(ctx, server.Principal{Role: api.RoleOperator})
	if err != nil {
		return nil, err
	}
	var out []api.Flow
	for _, r := range recs {
		if !p.Operator() && r.Owner != p.Name {
			continue
		}
		f, err := n.apiFlow(r, cat)
		if err != nil {
			return nil, err
		}
		if runtime != "" && !slices.ContainsFunc(f.Modules, func(m api.FlowModule) bool { return m.Runtime == runtime }) {
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

// Flow implements server.FlowBackend.
func (n *Node) Flow(ctx context.Context, p server.Principal, id string) (api.Flow, error) {
	if f, done, err := forwardFlow[api.Flow](ctx, n, p, flowCall{Op: "get", ID: id}); done {
		return f, err
	}
	r, err := n.ownedFlow(ctx, p, id)
	if err != nil {
		return api.Flow{}, err
	}
	cat, err := n.flowCatalog(ctx, server.Principal{Role: api.RoleOperator})
	if err != nil {
		return api.Flow{}, err
	}
	return n.apiFlow(r, cat)
}

// RemoveFlow implements server.FlowBackend.
func (n *Node) RemoveFlow(ctx context.Context, p server.Principal, id string) error {
	if _, done, err := forwardFlow[struct{}](ctx, n, p, flowCall{Op: "rm", ID: id}); done {
		return err
	}
	n.flowsMu.Lock()
	defer n.flowsMu.Unlock()
	r, err := n.ownedFlow(ctx, p, id)
	if err != nil {
		return err
	}
	n.stopFlow(id, false)
	if err := n.store.RemoveFlow(ctx, id, r.Revision); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return server.Errorf(server.ErrConflict, "flow %s was changed meanwhile; remove it again", id)
		}
		if r.Running {
			if serr := n.startFlow(ctx, r); serr != nil {
				n.log.Error("flow not removed and not started again", "flow", id, logErr, serr)
			}
		}
		return err
	}
	dropped, err := n.store.PurgeFlowQueue(ctx, id)
	if err != nil {
		n.log.Warn("flow removed, its queue not purged", "flow", id, logErr, err)
	}
	if err := n.store.PurgeFlowRuns(ctx, id); err != nil {
		n.log.Warn("flow removed, its runs not purged", "flow", id, logErr, err)
	}
	if err := n.store.RemoveFlowContext(ctx, id); err != nil {
		n.log.Warn("flow removed, its context not removed", "flow", id, logErr, err)
	}
	n.deleteFlowConsumers(id, nil)
	if fl, err := decodeFlow(r); err == nil {
		n.removeInline(ctx, id, &fl, nil)
	}
	n.log.Info("flow removed", "flow", id, "by", p.Name, "messages_dropped", dropped)
	return nil
}

// ownedFlow is flow id's record if p may see it; another owner's flow is
// not found for a submitter.
func (n *Node) ownedFlow(ctx context.Context, p server.Principal, id string) (store.FlowRecord, error) {
	r, err := n.store.Flow(ctx, id)
	if err != nil {
		return store.FlowRecord{}, err
	}
	if !p.Operator() && r.Owner != p.Name {
		return store.FlowRecord{}, fmt.Errorf("flow %q: %w", id, store.ErrNotFound)
	}
	return r, nil
}

var _ server.FlowBackend = (*Node)(nil)
