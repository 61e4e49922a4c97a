package node

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// maxForwardPath bounds a forwarded service's path: policy's redirect depth
// is at most 16.
const maxForwardPath = 17

// forwardURL is this node's base URL as its peers know it.
func (n *Node) forwardURL() string {
	if u := n.cfg.Forwarding.URL; u != "" {
		return strings.TrimSuffix(u, "/")
	}
	return n.URL()
}

// acceptForwarded checks the receipt a forwarded submission came with,
// the forwarding node's signed decision to forward m (digest) here, and
// returns the path and depth admission judges it with. Anything that does
// not hold is refused, naming what: a receipt that does not verify
// (forged or altered), that is not a forward, that names other code or
// another node, or whose path already holds this node (a loop).
func (n *Node) acceptForwarded(r *attest.Receipt, m *manifest.Service, digest string) (hops []string, depth int, err error) {
	bad := func(format string, args ...any) error {
		return server.Errorf(server.ErrInvalid, "%s header: "+format, append([]any{attest.ForwardHeaderName}, args...)...)
	}
	if err := attest.VerifyReceipt(*r); err != nil {
		return nil, 0, bad("the forwarding receipt does not verify (%v): forged or altered", err)
	}
	self := n.forwardURL()
	want := policy.Forward
	if r.Advertise {
		want = policy.Run // an offer of a service the sender runs
	}
	switch {
	case r.Verdict != string(want):
		return nil, 0, bad("the receipt's verdict is %q, not %s", r.Verdict, want)
	case r.ServiceDigest != digest:
		return nil, 0, bad("the receipt is for code %s, not this archive's %s", r.ServiceDigest, digest)
	case r.Service != m.Name || r.Version != m.Version:
		return nil, 0, bad("the receipt is for %s %s, not %s %s", r.Service, r.Version, m.Name, m.Version)
	case strings.TrimSuffix(r.ForwardTo, "/") != self:
		return nil, 0, bad("the receipt forwards to %s, not to this node (%s)", r.ForwardTo, self)
	case len(r.Path) == 0 || len(r.Path) > maxForwardPath:
		return nil, 0, bad("the receipt's path must name 1 to %d nodes, the forwarding node last", maxForwardPath)
	case r.RedirectDepth < 0 || r.RedirectDepth > 16:
		return nil, 0, bad("the receipt's redirect depth %d is not 0 to 16", r.RedirectDepth)
	}
	if slices.ContainsFunc(r.Path, func(p string) bool { return strings.TrimSuffix(p, "/") == self }) {
		return nil, 0, server.Errorf(server.ErrConflict, "forwarding loop: %s %s came through %s, and this node (%s) is on that path already",
			m.Name, m.Version, strings.Join(r.Path, " → "), self)
	}
	return r.Path, r.RedirectDepth, nil
}

// forward sends a submission this node's policy forwards (d) to the peers
// policy.peers lists, from d's peer on, skipping those on its path or
// without a token, and those that do not answer (each with why): the first
// that answers settles it, running the service, forwarding it further or
// refusing it. Each attempt carries this node's signed receipt of its
// decision to forward there. What came of it is stored (GET
// /v1/forwards) before the answer: a run there is a success whose Service
// is the peer's; a refusal is the peer's reasons.
func (n *Node) forward(ctx context.Context, p server.Principal, pol *policy.Compiled, sub policy.Submission, d policy.Decision, data []byte, o api.SubmitOptions) (api.SubmitResult, error) {
	m := sub.Manifest
	self := n.forwardURL()
	submitter := p.Name
	if o.Forwarded != nil {
		submitter = o.Forwarded.Submitter
	}
	rec := store.Forward{
		At: time.Now().UTC(), Kind: api.KindForward, Service: m.Name, Version: m.Version, Digest: sub.Digest, Submitter: submitter,
		Path: sub.Hops, Outcome: api.ForwardUnreachable,
	}
	peers := pol.Policy().Peers
	start := slices.Index(peers, d.Forward.Peer)
	var answer api.SubmitResult
	var refusal *api.Refusal
	for _, peer := range peers[max(start, 0):] {
		if peer == self || slices.Contains(sub.Hops, peer) {
			continue
		}
		token := n.cfg.Forwarding.token(peer)
		if token == "" {
			rec.Skipped = append(rec.Skipped, peer+": no token for it in forwarding.peers")
			continue
		}
		try := d
		try.Forward = &policy.ForwardTo{Peer: peer, Depth: d.Forward.Depth}
		if peer != d.Forward.Peer {
			try.Reasons = append(slices.Clone(d.Reasons), policy.Reason{Rule: "peers", OK: true,
				Detail: fmt.Sprintf("forward to %s instead: %s", peer, strings.Join(rec.Skipped, "; "))})
		}
		receipt := pol.NewReceipt(sub, try, time.Now())
		receipt.Path = append(slices.Clone(sub.Hops), self)
		receipt.Submitter = submitter
		signed := attest.SignReceipt(n.key, receipt)
		rec.Peer, rec.Receipt = peer, &signed
		c := api.NewClient(peer, token)
		c.HTTP = &http.Client{Timeout: n.cfg.Forwarding.timeout()}
		fo := o
		fo.Forwarded, fo.Notes = &signed, nil
		res, no, err := c.SubmitForwarded(ctx, data, fo)
		switch {
		case err != nil:
			rec.Skipped = append(rec.Skipped, fmt.Sprintf("%s: %v", peer, err))
			continue
		case no != nil:
			refusal = no
			rec.Outcome, rec.PeerReceipt, rec.Detail = api.ForwardRejected, no.Receipt, fmt.Sprintf("%s refused it (%d): %s", peer, no.Status, no.Message)
		default:
			answer = res
			rec.Outcome, rec.PeerReceipt = api.ForwardRun, res.Service.Receipt
			rec.Detail = peer + " runs it"
			if f := res.Forward; f != nil {
				rec.Detail = fmt.Sprintf("%s forwarded it on: %s", peer, f.Detail)
			}
		}
		break
	}
	if rec.Outcome == api.ForwardUnreachable {
		rec.Detail = "no peer took it: " + strings.Join(rec.Skipped, "; ")
		if len(rec.Skipped) == 0 {
			rec.Detail = "no peer took it: every peer is this node or already on its path"
		}
	}
	if err := n.store.AppendForward(ctx, rec); err != nil {
		n.log.Error("forward not recorded", logService, m.Name, "peer", rec.Peer, "outcome", rec.Outcome, logErr, err)
		if rec.Outcome == api.ForwardRun {
			// It runs there; say so, and that this node has no record of it.
			return api.SubmitResult{}, server.Errorf(server.ErrUnavailable, "forwarded: %s; but this node could not record the forward: %v", rec.Detail, err)
		}
	}
	n.log.Info("service forwarded", logService, m.Name, "version", m.Version, "peer", rec.Peer, "outcome", rec.Outcome, "detail", rec.Detail)
	fwd := forwardView(rec)
	switch rec.Outcome {
	case api.ForwardRun:
		answer.Forward = &fwd
		return answer, nil
	case api.ForwardRejected:
		e := &server.Error{Kind: server.ErrRefused, Decision: refusal.Decision, Receipt: refusal.Receipt, Problems: refusal.Problems,
			Msg: fmt.Sprintf("admission: %s %s is not run here; forwarded to %s, which refused it: %s", m.Name, m.Version, rec.Peer, refusal.Message)}
		return api.SubmitResult{}, e
	}
	e := decisionError(m, d).(*server.Error)
	e.Kind = server.ErrUnavailable
	e.Msg = fmt.Sprintf("admission: %s %s is not run here and %s", m.Name, m.Version, rec.Detail)
	return api.SubmitResult{}, e
}

// forwardView is a forward record's wire form.
func forwardView(f store.Forward) api.Forward {
	kind := f.Kind
	if kind == "" {
		kind = api.KindForward
	}
	return api.Forward{
		At: f.At, Kind: kind, Service: f.Service, Version: f.Version, Digest: f.Digest, Submitter: f.Submitter, Path: f.Path,
		Peer: f.Peer, Outcome: f.Outcome, Detail: f.Detail, Skipped: f.Skipped, Receipt: f.Receipt, PeerReceipt: f.PeerReceipt,
	}
}

// Forwards lists the services this node forwarded (GET /v1/forwards),
// newest first.
func (n *Node) Forwards(ctx context.Context, limit int) ([]api.Forward, error) {
	fs, err := n.store.Forwards(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.Forward, len(fs))
	for i, f := range fs {
		out[i] = forwardView(f)
	}
	return out, nil
}

// advertise offers a service just admitted here to the peers the policy
// advertises it to (policy.advertise), in the background: each peer judges
// it by its own policy and may run it too, and may advertise it on while
// hops are left (the fewer of this node's policy's and what an incoming
// offer carried). Peers on the service's path, this node and peers
// without a token are left out. Each offer is recorded with its answer
// (GET /v1/forwards, kind advertise); a node closing stops them.
func (n *Node) advertise(pol *policy.Compiled, sub policy.Submission, d policy.Decision, data []byte, o api.SubmitOptions, submitter string) {
	m := sub.Manifest
	to, hops, ok := pol.Advertises(m.Name)
	if !ok {
		return
	}
	if f := o.Forwarded; f != nil && f.Advertise {
		hops = min(hops, f.RedirectDepth)
	}
	if hops < 1 {
		return
	}
	self := n.forwardURL()
	path := append(slices.Clone(sub.Hops), self)
	n.adverts.Go(func() {
		for _, peer := range to {
			if peer == self || slices.Contains(sub.Hops, peer) {
				continue
			}
			rec := store.Forward{At: time.Now().UTC(), Kind: api.KindAdvertise, Service: m.Name, Version: m.Version, Digest: sub.Digest,
				Submitter: submitter, Path: sub.Hops, Peer: peer, Outcome: api.ForwardUnreachable}
			token := n.cfg.Forwarding.token(peer)
			if token == "" {
				rec.Detail = "no token for it in forwarding.peers"
			} else {
				receipt := pol.NewReceipt(sub, d, time.Now())
				receipt.ForwardTo, receipt.RedirectDepth, receipt.Path, receipt.Submitter, receipt.Advertise = peer, hops-1, path, submitter, true
				signed := attest.SignReceipt(n.key, receipt)
				rec.Receipt = &signed
				ctx, cancel := context.WithTimeout(n.advertCtx, n.cfg.Forwarding.timeout())
				c := api.NewClient(peer, token)
				fo := o
				fo.Forwarded, fo.Notes = &signed, nil
				res, no, err := c.SubmitForwarded(ctx, data, fo)
				cancel()
				switch {
				case err != nil:
					rec.Detail = err.Error()
				case no != nil:
					rec.Outcome, rec.PeerReceipt, rec.Detail = api.ForwardRejected, no.Receipt, fmt.Sprintf("%s refused it (%d): %s", peer, no.Status, no.Message)
				default:
					rec.Outcome, rec.PeerReceipt, rec.Detail = api.ForwardRun, res.Service.Receipt, peer+" runs it too"
					if res.Unchanged {
						rec.Detail = peer + " runs it already"
					}
				}
			}
			if n.advertCtx.Err() != nil && rec.Outcome == api.ForwardUnreachable {
				return // the node is closing: nothing was offered
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := n.store.AppendForward(ctx, rec)
			cancel()
			if err != nil {
				n.log.Error("advertisement not recorded", logService, m.Name, "peer", peer, "outcome", rec.Outcome, logErr, err)
			}
			n.log.Info("service advertised", logService, m.Name, "version", m.Version, "peer", peer, "outcome", rec.Outcome, "detail", rec.Detail)
		}
	})
}
