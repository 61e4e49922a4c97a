package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// Placement of a submission in a cluster. The node a service is submitted
// to picks, by the nodes' offers in the registry, where it may run (labels,
// drivers, the services bound), and sends it to the first of them; that
// node's own policy decides, as for a submission made there. A node that
// refuses it passes it to the next. Without placement constraints the node
// submitted to comes first when it is eligible, so a submission stays where
// it was made unless the manifest asks otherwise.

// placeTimeout bounds one node's answer to a placement (its admission may
// wait in its queue at capacity, and a deploy builds dependencies); the
// node placed on gives up a little sooner, so its answer arrives.
const placeTimeout = 2 * time.Minute

// placeRequest is a submission another node of the cluster placed here.
// The archive is in the cluster's artifact store under Digest; the caller
// was authenticated by the node that sends it.
type placeRequest struct {
	Digest  string            `json:"digest"`
	Name    string            `json:"principal"`
	Role    string            `json:"role"`
	Options api.SubmitOptions `json:"options"`
	From    string            `json:"from"`
}

// placeReply is a placement's answer: the result, or the error as the node
// placed on said it.
type placeReply struct {
	Result     *api.SubmitResult `json:"result,omitempty"`
	Kind       string            `json:"kind,omitempty"`
	Error      string            `json:"error,omitempty"`
	Problems   []string          `json:"problems,omitempty"`
	Decision   *api.Decision     `json:"decision,omitempty"`
	Receipt    *attest.Receipt   `json:"receipt,omitempty"`
	RetryAfter int64             `json:"retry_after_ms,omitempty"`
}

// placementAsked is the placement a service's record asks for.
func placementAsked(rec store.Service) manifest.Placement {
	var m struct {
		Placement manifest.Placement `json:"placement"`
	}
	json.Unmarshal(rec.Manifest, &m)
	return m.Placement
}

// hasLabels reports whether labels hold every label want asks for.
func hasLabels(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// placementFor orders the nodes of the cluster that may run m: up (not
// draining), with every label m's placement asks for, running one of its
// drivers, and below their services bound. With placement.spread the node
// holding the fewest services comes first (ties broken by a hash of node
// and service, as failover orders them); without, this node first when it
// is eligible, then the same order. passed says, for each node left out,
// why.
func (n *Node) placementFor(m *manifest.Service, drivers []string) (cands []api.ClusterNode, passed []string) {
	held := n.place.held()
	if pl, ok := n.place.get(m.Name); ok {
		held[pl.Node]-- // a new version replaces the one placed there
	}
	nodes := n.reg.view()
	for _, name := range slices.Sorted(maps.Keys(nodes)) {
		c := nodes[name]
		var why string
		switch {
		case c.Health != api.NodeUp:
			why = c.Health
		case !hasLabels(c.Labels, m.Placement.Labels):
			why = "labels " + labelList(c.Labels) + " lack " + labelList(m.Placement.Labels)
		case !slices.ContainsFunc(drivers, func(d string) bool { return slices.Contains(c.Drivers, d) }):
			why = "runs none of the drivers " + strings.Join(drivers, ", ")
		case m.Runtime.Driver == manifest.DriverProcess && m.Runtime.Language != "" && slices.Contains(c.Drivers, string(manifest.DriverProcess)) &&
			!slices.Contains(c.Languages, m.Runtime.Language) && !slices.Contains(c.Drivers, string(manifest.DriverDocker)):
			why = "runs no " + m.Runtime.Language
		case c.ServicesMax > 0 && held[name] >= c.ServicesMax:
			why = fmt.Sprintf("at its bound of %d services", c.ServicesMax)
		}
		if why != "" {
			passed = append(passed, name+": "+why)
			continue
		}
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(a, b api.ClusterNode) int {
		if !m.Placement.Spread {
			switch n.cfg.Name {
			case a.Name:
				return -1
			case b.Name:
				return 1
			}
		}
		if ha, hb := held[a.Name], held[b.Name]; ha != hb {
			return ha - hb
		}
		return int(turnHash(a.Name, m.Name)) - int(turnHash(b.Name, m.Name))
	})
	return cands, passed
}

// labelList writes labels as {k=v, ...}, sorted.
func labelList(labels map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		out = append(out, k+"="+labels[k])
	}
	return "{" + strings.Join(out, ", ") + "}"
}

// placeAway is what a submission made here returns, under submitMu, when
// placement puts another node first: queued places it there with submitMu
// released, as two nodes placing on each other at once would otherwise
// each wait on the other's lock.
type placeAway struct {
	p      server.Principal
	m      *manifest.Service
	digest string
	data   []byte
	o      api.SubmitOptions
	cands  []api.ClusterNode
	passed []string
}

func (a *placeAway) Error() string {
	return fmt.Sprintf("%s %s is placed on node %s", a.m.Name, a.m.Version, a.cands[0].Name)
}

// placedHereKey marks, in a submission's context, one whose placement came to
// this node's turn: it is admitted here, with notes of the nodes that
// refused it before.
type placedHereKey struct{}

// placeHere decides where a submission made here goes: nil to admit it
// here, a *placeAway to place it elsewhere, or why no node may run it.
func (n *Node) placeHere(ctx context.Context, p server.Principal, m *manifest.Service, sub policy.Submission, digest string, data []byte, o *api.SubmitOptions) error {
	if notes, ok := ctx.Value(placedHereKey{}).([]policy.Reason); ok {
		o.Notes = append(o.Notes, notes...)
		return nil
	}
	cands, passed := n.placementFor(m, candidateDrivers(m, sub))
	if len(cands) == 0 {
		return server.Errorf(server.ErrUnusable, "placement: no node of the cluster may run %s %s: %s", m.Name, m.Version, strings.Join(passed, "; "))
	}
	if cands[0].Name == n.cfg.Name {
		return nil
	}
	return &placeAway{p: p, m: m, digest: digest, data: data, o: *o, cands: cands, passed: passed}
}

// placeRemote offers the submission to the nodes placement chose, in turn:
// the first that admits it answers. local is true when this node's turn
// comes (the nodes before it refused), with notes saying so; the caller
// admits it here.
func (n *Node) placeRemote(ctx context.Context, a *placeAway) (res api.SubmitResult, notes []policy.Reason, local bool, err error) {
	if err := n.store.PutArtifact(ctx, a.digest, a.data); err != nil {
		return api.SubmitResult{}, nil, false, err
	}
	var refused []string
	for _, c := range a.cands {
		if c.Name == n.cfg.Name {
			for _, r := range refused {
				notes = append(notes, policy.Reason{Rule: "placement", OK: true, Detail: "placed here after " + r})
			}
			return api.SubmitResult{}, notes, true, nil
		}
		o := a.o
		for _, r := range refused {
			o.Notes = append(o.Notes, policy.Reason{Rule: "placement", OK: true, Detail: "placed here after " + r})
		}
		res, err := n.placeOn(ctx, c.Name, a.p, a.digest, o)
		if err == nil {
			// Counted at once for the next placement (the watch brings
			// the entry a moment later).
			n.place.remember(a.m.Name, placed{Node: c.Name, Reason: placeSubmitted})
			n.log.Info("service placed on another node", logService, a.m.Name, "version", a.m.Version, "node", c.Name, "spread", a.m.Placement.Spread)
			return res, nil, false, nil
		}
		if !errors.Is(err, server.ErrRefused) && !errors.Is(err, server.ErrUnavailable) && !errors.Is(err, server.ErrBusy) && !errors.Is(err, server.ErrUnusable) {
			return api.SubmitResult{}, nil, false, err // about the submission, not the node: as it was said
		}
		n.log.Info("placement: a node did not admit the service", logService, a.m.Name, "node", c.Name, logErr, err)
		refused = append(refused, c.Name+" did not admit it ("+errText(err)+")")
	}
	e := server.Errorf(server.ErrRefused, "placement: no node of the cluster admitted %s %s", a.m.Name, a.m.Version)
	e.Problems = append(refused, a.passed...)
	return api.SubmitResult{}, nil, false, e
}

// errText is err's message with its problems, on one line.
func errText(err error) string {
	var se *server.Error
	if errors.As(err, &se) && len(se.Problems) > 0 {
		return se.Msg + ": " + strings.Join(se.Problems, "; ")
	}
	return err.Error()
}

// placeOn sends a submission to node and returns its answer.
func (n *Node) placeOn(ctx context.Context, node string, p server.Principal, digest string, o api.SubmitOptions) (api.SubmitResult, error) {
	b, err := json.Marshal(placeRequest{Digest: digest, Name: p.Name, Role: p.Role, Options: o, From: n.cfg.Name})
	if err != nil {
		return api.SubmitResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, placeTimeout+10*time.Second)
	defer cancel()
	msg, err := n.bus.Conn.RequestWithContext(ctx, bus.NodeSubject(node, "place"), b)
	if err != nil {
		return api.SubmitResult{}, &server.Error{Kind: server.ErrUnavailable, Msg: fmt.Sprintf("node %s did not answer: %v", node, err)}
	}
	var reply placeReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return api.SubmitResult{}, &server.Error{Kind: server.ErrUnavailable, Msg: fmt.Sprintf("node %s answered what is not a placement's answer: %v", node, err)}
	}
	if reply.Result != nil {
		return *reply.Result, nil
	}
	kind, ok := errorKinds[reply.Kind]
	if !ok {
		kind = server.ErrUnavailable
	}
	return api.SubmitResult{}, &server.Error{Kind: kind, Msg: fmt.Sprintf("node %s: %s", node, reply.Error), Problems: reply.Problems,
		Decision: reply.Decision, Receipt: reply.Receipt, RetryAfter: time.Duration(reply.RetryAfter) * time.Millisecond}
}

// servePlacements admits the submissions the other nodes place here, each
// in a goroutine of its own.
func (n *Node) servePlacements() error {
	sub, err := n.bus.Conn.Subscribe(bus.NodeSubject(n.cfg.Name, "place"), func(m *nats.Msg) {
		go n.answerPlace(m)
	})
	if err != nil {
		return fmt.Errorf("cluster: take placements: %w", err)
	}
	n.undo = append(n.undo, sub.Unsubscribe)
	return nil
}

func (n *Node) answerPlace(m *nats.Msg) {
	var reply placeReply
	defer func() {
		if p := recover(); p != nil {
			n.log.Error("panic in a placement", "panic", p)
			reply = placeReply{Kind: "internal", Error: fmt.Sprintf("panic: %v", p)}
		}
		n.respond(m, reply, "placement")
	}()
	var req placeRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		reply = placeReply{Kind: "invalid", Error: "cluster: a placement that is not JSON: " + err.Error()}
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, placeTimeout)
	defer cancel()
	res, err := n.admitPlaced(ctx, req)
	if err == nil {
		reply.Result = &res
		return
	}
	reply = placeReply{Kind: errorKind(err), Error: err.Error()}
	var se *server.Error
	if errors.As(err, &se) {
		reply.Problems, reply.Decision, reply.Receipt, reply.RetryAfter = se.Problems, se.Decision, se.Receipt, se.RetryAfter.Milliseconds()
	}
}

// admitPlaced admits a submission another node placed here, as one made
// here, by this node's policy; it is not placed again.
func (n *Node) admitPlaced(ctx context.Context, req placeRequest) (api.SubmitResult, error) {
	if req.Role != api.RoleOperator && req.Role != api.RoleSubmitter || req.Name == "" || req.From == "" {
		return api.SubmitResult{}, server.Errorf(server.ErrInvalid, "cluster: a placement names no caller or no node it comes from")
	}
	// Stored (acknowledged) before the request was sent, but this node's
	// reads may reach a replica a moment behind: not found is asked again.
	var data []byte
	var err error
	deadline := time.Now().Add(15 * time.Second)
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		data, err = n.store.Artifact(ctx, req.Digest)
		if !errors.Is(err, store.ErrNotFound) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		return api.SubmitResult{}, fmt.Errorf("cluster: the placed archive %s: %w", req.Digest, err)
	}
	o := req.Options
	o.PlacedBy, o.Forwarded = req.From, nil
	p := server.Principal{Name: req.Name, Role: req.Role}
	return n.queued(ctx, o, func(ctx context.Context) (api.SubmitResult, error) {
		return n.submitArchive(ctx, p, data, o, nil)
	})
}
