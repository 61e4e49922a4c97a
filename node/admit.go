package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// KeyFile is the node key's file name inside the data dir: the ed25519 key
// that signs decision receipts (and, later, action batches). Its public half
// is beside it in KeyFile.pub.
const KeyFile = "node.key"

// Policy returns the policy in force. Safe for concurrent use.
func (n *Node) Policy() *policy.Compiled { return n.pol.Load() }

// ReloadPolicy compiles p and, only if that succeeds, makes it the policy in
// force; on error the previous policy stays. Services already admitted keep
// running; the new policy decides the next submissions.
func (n *Node) ReloadPolicy(p policy.Policy) error {
	c, err := policy.Compile(p)
	if err != nil {
		n.log.Error("policy reload refused; keeping the previous policy", "digest", n.Policy().Digest(), logErr, err)
		return fmt.Errorf("policy reload: %w", err)
	}
	old := n.pol.Swap(c)
	n.log.Info("policy reloaded", "digest", c.Digest(), "previous", old.Digest())
	n.kickAdmission(context.Background()) // limits.services may have grown
	return nil
}

func (n *Node) loadNodeKey() error {
	path := filepath.Join(n.cfg.Data, KeyFile)
	k, err := attest.LoadPrivateKey(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := attest.WriteKeyPair(path); err != nil {
			return fmt.Errorf("node key: %w", err)
		}
		k, err = attest.LoadPrivateKey(path)
	}
	if err != nil {
		return fmt.Errorf("node key: %w", err)
	}
	n.key = k
	return nil
}

// PublicKey is the node key's public half, which verifies its receipts.
func (n *Node) PublicKey() attest.PublicKey { return n.key.Public() }

// policyView is what admission sees of this node right now, once the
// self-tests at start of the named drivers (of all, when none is named)
// have ended; a driver whose test still runs is seen disabled, "self-test
// running".
func (n *Node) policyView(ctx context.Context, drivers ...string) (policy.Node, error) {
	if err := n.waitDrivers(ctx, drivers...); err != nil {
		return policy.Node{}, fmt.Errorf("waiting for the drivers' self-tests: %w", err)
	}
	v := policy.Node{Drivers: map[string]policy.DriverInfo{}, Targets: map[string]string{}, Self: n.forwardURL(), Now: time.Now().UTC()}
	for name, d := range n.drivers {
		offer := d.driver.Offer()
		enabled, reason := d.status()
		info := policy.DriverInfo{Enabled: enabled, Reason: reason, Network: offer.Isolation["network-grant"], Disabled: n.disabledLanguages(name)}
		for lang := range offer.Languages {
			info.Languages = append(info.Languages, lang)
		}
		v.Drivers[name] = info
	}
	count, targets, err := n.regIndex.read(ctx, n.store)
	if err != nil {
		return v, err
	}
	v.Services, v.Targets = n.servicesCounted(count), targets
	if v.Revoked, err = n.revoked(ctx); err != nil {
		return v, err
	}
	return v, nil
}

// servicesCounted is the count policy's limits.services bounds, of a
// registry holding count: every service on a node alone, the services
// placed on this node in a cluster (each node's policy bounds its own).
func (n *Node) servicesCounted(count int) int {
	if n.place == nil {
		return count
	}
	return n.place.held()[n.cfg.Name]
}

// previousManifest decodes the manifest of the admitted version a
// submission replaces.
func previousManifest(rec store.Service) (*manifest.Service, error) {
	m, err := manifest.Check(rec.Manifest, manifest.JSON)
	if err != nil {
		return nil, fmt.Errorf("stored manifest of %s: %w", rec.Name, err)
	}
	return m, nil
}

// receipt signs the decision with the node key.
func (n *Node) receipt(pol *policy.Compiled, sub policy.Submission, d policy.Decision) *attest.Receipt {
	r := attest.SignReceipt(n.key, pol.NewReceipt(sub, d, time.Now()))
	return &r
}

// decisionError is the error for a decision that is not run: the
// decision, with each failed rule as a problem.
func decisionError(m *manifest.Service, d policy.Decision) error {
	e := &server.Error{Kind: server.ErrRefused, Decision: &d}
	switch d.Verdict {
	case policy.Forward:
		e.Msg = fmt.Sprintf("admission: %s %s is not run here; policy forwards it to %s (redirect depth %d)", m.Name, m.Version, d.Forward.Peer, d.Forward.Depth)
	default:
		e.Msg = fmt.Sprintf("admission: %s %s was rejected", m.Name, m.Version)
	}
	for _, r := range d.Reasons {
		if !r.OK {
			e.Problems = append(e.Problems, r.Rule+": "+r.Detail)
		}
	}
	return e
}

// candidateDrivers are the drivers admission may choose for m (policy's
// admission.driver): its own, those the submission accepts besides, and
// docker for a process service. Admission waits for their self-tests
// only.
func candidateDrivers(m *manifest.Service, sub policy.Submission) []string {
	out := []string{string(m.Runtime.Driver)}
	for _, d := range sub.Drivers {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	if m.Runtime.Driver == manifest.DriverProcess && !slices.Contains(out, string(manifest.DriverDocker)) {
		out = append(out, string(manifest.DriverDocker))
	}
	return out
}
