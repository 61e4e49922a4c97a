package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/decision"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// Admission plugins (policy rules that name a service): the node consults
// each plugin service before the final Admit, through the ordinary
// invocation path (any driver, sandboxed, recorded as a run with trigger
// kind admission), and passes the answers in Submission.Plugins. Admit
// folds them in; a plugin that is missing, not the operator's, not at the
// pinned digest, slow, crashing or answering badly fails its rule.

// triggerAdmission is the trigger kind of a plugin's runs.
const triggerAdmission = "admission"

// pluginInput is the message of a plugin's run.
type pluginInput struct {
	// Rule is the name of the plugin's rule.
	Rule string `json:"rule"`
	// Manifest is the submitted service's manifest, normalized.
	Manifest json.RawMessage `json:"manifest"`
	// Digest is its archive digest (before a source.location fetch: the
	// manifest's source.digest).
	Digest string `json:"digest"`
	// Payload is the archive's size in bytes; 0 before a fetch.
	Payload      int64                `json:"payload"`
	Attestations []attest.Attestation `json:"attestations"`
	// Delegations are the trust-tree delegations that came with the
	// submission; the decision so far says which of them counted.
	Delegations []attest.Delegation   `json:"delegations,omitempty"`
	Origin      *decision.OriginClaim `json:"origin,omitempty"`
	// Submitter is the name of who submits: a token's name, operator or
	// anonymous.
	Submitter string   `json:"submitter"`
	Hops      []string `json:"hops,omitempty"`
	// Previous is the admitted version this one replaces; absent for a
	// new service.
	Previous string     `json:"previous,omitempty"`
	Node     pluginNode `json:"node"`
	// DecisionSoFar is the decision of the built-in rules (Preliminary):
	// the limits a plugin may narrow.
	DecisionSoFar policy.Decision `json:"decision_so_far"`
}

// pluginNode is what a plugin sees of the node.
type pluginNode struct {
	Name     string          `json:"name"`
	Services int             `json:"services"`
	Drivers  map[string]bool `json:"drivers"`
	Now      time.Time       `json:"now"`
}

// decide is pol.Admit(*sub, view) with the policy's admission plugins
// consulted first and their answers put in sub.Plugins. When the built-in
// rules refuse the service already, no plugin runs (none could admit it)
// and that decision is the answer. Never panics for what a plugin does.
func (n *Node) decide(ctx context.Context, p server.Principal, pol *policy.Compiled, sub *policy.Submission, view policy.Node) policy.Decision {
	rules := pol.Plugins()
	if len(rules) == 0 {
		return pol.Admit(*sub, view)
	}
	so := pol.Preliminary(*sub, view)
	if so.Verdict != policy.Run {
		return so
	}
	sub.Plugins = n.consultPlugins(ctx, p, rules, *sub, view, so)
	return pol.Admit(*sub, view)
}

// consultPlugins asks every plugin rule's service about sub, at the same
// time, and returns the answers by rule name.
func (n *Node) consultPlugins(ctx context.Context, p server.Principal, rules []policy.PluginRule, sub policy.Submission, view policy.Node, so policy.Decision) map[string]policy.PluginAnswer {
	answers := make([]policy.PluginAnswer, len(rules))
	digest := sub.Digest
	if digest == "" {
		digest = sub.Manifest.Source.Digest
	}
	// The operator's own submission of a plugin service at its pinned
	// digest is not judged by plugins: otherwise a plugin could never be
	// admitted where its rule is already in force.
	self := ""
	if p.Operator() && p.Name == operatorOwner {
		for _, r := range rules {
			if r.Service == sub.Manifest.Name && r.Digest == digest {
				self = r.Name
			}
		}
	}
	input, err := n.pluginInput(p, sub, digest, view, so)
	var wg sync.WaitGroup
	for i, r := range rules {
		switch {
		case self != "":
			answers[i] = policy.PluginAnswer{Verdict: policy.PluginRun, Reasons: []string{fmt.Sprintf("not consulted: the operator submits admission plugin %s at the digest rules.%s pins", sub.Manifest.Name, self)}}
		case err != nil:
			answers[i] = policy.PluginFailed("the node could not write its input: %v", err)
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers[i] = n.askPlugin(ctx, r, input)
			}()
		}
	}
	wg.Wait()
	out := make(map[string]policy.PluginAnswer, len(rules))
	for i, r := range rules {
		out[r.Name] = answers[i]
	}
	return out
}

// pluginInput returns the writer of a plugin's message for sub: the
// same for every rule but for its name.
func (n *Node) pluginInput(p server.Principal, sub policy.Submission, digest string, view policy.Node, so policy.Decision) (func(rule string) ([]byte, error), error) {
	m, err := json.Marshal(sub.Manifest)
	if err != nil {
		return nil, err
	}
	in := pluginInput{
		Manifest: m, Digest: digest, Payload: sub.PayloadSize, Attestations: sub.Attestations, Delegations: sub.Delegations,
		Submitter: p.Name, Hops: sub.Hops, DecisionSoFar: so,
		Node: pluginNode{Name: n.cfg.Name, Services: view.Services, Drivers: map[string]bool{}, Now: view.Now},
	}
	if in.Attestations == nil {
		in.Attestations = []attest.Attestation{}
	}
	if !sub.Origin.IsZero() {
		in.Origin = &sub.Origin
	}
	if sub.Previous != nil {
		in.Previous = sub.Previous.Version
	}
	for name, d := range view.Drivers {
		in.Node.Drivers[name] = d.Enabled
	}
	return func(rule string) ([]byte, error) {
		in := in
		in.Rule = rule
		return json.Marshal(in)
	}, nil
}

// askPlugin consults the service of plugin rule r: it must be admitted,
// the operator's, at the pinned digest and started. Whatever goes wrong
// is the answer's Failure, never a panic or an error.
func (n *Node) askPlugin(ctx context.Context, r policy.PluginRule, input func(string) ([]byte, error)) (ans policy.PluginAnswer) {
	defer func() {
		if p := recover(); p != nil {
			n.log.Error("panic consulting an admission plugin", "rule", r.Name, logService, r.Service, "panic", p)
			ans = policy.PluginFailed("the node failed while consulting it: %v", p)
		}
	}()
	rec, err := n.store.Service(ctx, r.Service)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return policy.PluginFailed("service %s is not admitted on this node", r.Service)
	case err != nil:
		return policy.PluginFailed("service %s: %v", r.Service, err)
	case rec.Owner != operatorOwner:
		return policy.PluginFailed("service %s belongs to %s, not the operator: an admission plugin must be the operator's", r.Service, rec.Owner)
	case rec.Digest != r.Digest:
		return policy.PluginFailed("service %s has digest %s, not the %s the rule pins", r.Service, attest.ShortDigest(rec.Digest), attest.ShortDigest(r.Digest))
	}
	d := n.lookup(r.Service)
	if d == nil || d.rec.Digest != r.Digest {
		return policy.PluginFailed("service %s is registered but not deployed", r.Service)
	}
	msg, err := input(r.Name)
	if err != nil {
		return policy.PluginFailed("the node could not write its input: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	ev := trigger.Event{Service: r.Service, Trigger: triggerAdmission, Kind: triggerAdmission, At: time.Now().UTC(), Message: msg}
	run, err := n.invoke(cctx, d, ev)
	ans = pluginAnswer(r, run, err)
	log := n.log.With("rule", r.Name, logService, r.Service, logRun, run.ID)
	if ans.Failure != "" {
		log.Warn("admission plugin failed", "reason", ans.Failure)
	} else {
		log.Info("admission plugin answered", "verdict", ans.Verdict)
	}
	return ans
}

// pluginAnswer reads a plugin's answer from its run: the output's
// http.body, as for a webhook, an object or a JSON string holding one.
func pluginAnswer(r policy.PluginRule, run store.Run, err error) policy.PluginAnswer {
	ref := "its run"
	if run.ID != "" {
		ref = "run " + run.ID
	}
	switch {
	case err != nil:
		return policy.PluginFailed("%s: %v", ref, err)
	case run.Outcome == string(sandbox.Timeout):
		return policy.PluginFailed("%s timed out (the rule allows %s)", ref, r.Timeout)
	case run.Outcome != string(sandbox.OK) && run.Outcome != string(sandbox.Noop):
		hint := ""
		if strings.Contains(run.Error, `unknown field "verdict"`) {
			hint = ` (an admission plugin answers inside its output's http.body: {"http": {"body": {"verdict": ...}}})`
		}
		return policy.PluginFailed("%s ended %s: %s%s", ref, run.Outcome, firstLine(run.Error), hint)
	case run.Output == nil || run.Output.HTTP == nil || len(run.Output.HTTP.Body) == 0:
		return policy.PluginFailed("%s gave no answer: an admission plugin answers {verdict, reasons, limits} as its output's http.body", ref)
	case run.Output.HTTP.Status != 0 && (run.Output.HTTP.Status < 200 || run.Output.HTTP.Status > 299):
		return policy.PluginFailed("%s answered http status %d", ref, run.Output.HTTP.Status)
	}
	body := []byte(run.Output.HTTP.Body)
	var text string
	if json.Unmarshal(body, &text) == nil {
		body = []byte(text)
	}
	a, perr := policy.ParsePluginAnswer(body)
	if perr != nil {
		return policy.PluginFailed("%s answered badly: %s", ref, firstLine(perr.Error()))
	}
	return a
}

// firstLine is the first line of s, at most 300 bytes, with "…" when
// anything was cut: a reason is one line (the run keeps the whole error).
func firstLine(s string) string {
	line, _, cut := strings.Cut(strings.TrimSpace(s), "\n")
	if cut {
		return truncate(line, 300) + " …"
	}
	return truncate(line, 300)
}
