package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/flow"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// Flows (the runner API's addOrUpdateFlow, listFlowsForRuntime and
// removeFlow): the node keeps the flows applied to it, each checked
// against the services its author may use and the runtimes the node has,
// in the flows bucket. It does not run them yet.

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
	}
	a := api.FlowApplied{DryRun: dryRun, Created: old.ID == ""}
	if old.ID != "" {
		if old.Digest == rec.Digest {
			a.Unchanged = true
			a.Flow, err = n.apiFlow(old, cat)
			return a, err
		}
		var was flow.Flow
		if err := json.Unmarshal(old.Flow, &was); err != nil {
			return api.FlowApplied{}, fmt.Errorf("flow %s: the stored version does not decode: %w", fl.ID, store.ErrDamaged)
		}
		a.Changes = flowChanges(&was, fl)
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
	}
	a.Flow, err = n.apiFlow(rec, cat)
	return a, err
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
		if r.Enabled && r.Language != "" {
			cat.Runtimes[r.ID] = append(cat.Runtimes[r.ID], r.Language)
		}
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for name, d := range n.services {
		if !p.Operator() && d.rec.Owner != p.Name {
			continue
		}
		id, lang := serviceRuntime(d.manifest)
		cat.Services[name] = flow.Service{Language: lang}
		cat.runtimeOf[name] = id
	}
	return cat, nil
}

// serviceRuntime is the runtime id (as GET /v1/runtimes lists it) and the
// language of a service, as a flow sees them.
func serviceRuntime(m *manifest.Service) (id, language string) {
	switch d := string(m.Runtime.Driver); {
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
	var fl flow.Flow
	if err := json.Unmarshal(r.Flow, &fl); err != nil {
		return api.Flow{}, fmt.Errorf("flow %s does not decode: %w", r.ID, store.ErrDamaged)
	}
	out := api.Flow{ID: r.ID, Version: r.Version, Owner: r.Owner, Digest: r.Digest, Applied: r.Applied, Document: r.Flow,
		Modules: []api.FlowModule{}, Wires: []api.FlowWire{}}
	for _, m := range fl.Modules {
		am := api.FlowModule{ID: m.ID, Service: m.Service, Language: m.Language, Runtime: m.Runtime}
		if am.Runtime == "" {
			if m.Service != "" {
				am.Runtime = cat.runtimeOf[m.Service]
			} else {
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
	n.flowsMu.Lock()
	defer n.flowsMu.Unlock()
	r, err := n.ownedFlow(ctx, p, id)
	if err != nil {
		return err
	}
	if err := n.store.RemoveFlow(ctx, id, r.Revision); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return server.Errorf(server.ErrConflict, "flow %s was changed meanwhile; remove it again", id)
		}
		return err
	}
	n.log.Info("flow removed", "flow", id, "by", p.Name)
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
