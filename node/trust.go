package node

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// revocations holds the revocations of delegations the node was sent,
// read from the store once and kept beside it, by delegation id. The map
// is replaced, never changed, so a policy view may hold it while a new
// revocation arrives. Safe for concurrent use.
type revocations struct {
	mu   sync.Mutex
	byID map[string][]attest.Revocation // nil until loaded
}

// revoked returns the revocations the node holds, by delegation id, for
// admission (policy.Node.Revoked). The map must not be changed.
func (n *Node) revoked(ctx context.Context) (map[string][]attest.Revocation, error) {
	n.revocations.mu.Lock()
	defer n.revocations.mu.Unlock()
	if n.revocations.byID == nil {
		list, err := n.store.Revocations(ctx)
		if err != nil {
			return nil, err
		}
		byID := map[string][]attest.Revocation{}
		for _, r := range list {
			byID[r.Delegation] = append(byID[r.Delegation], r)
		}
		n.revocations.byID = byID
	}
	return n.revocations.byID, nil
}

// Revoke implements server.TrustBackend: r's signature verified (the
// server checked it; so does this), it is stored, and admission honours it
// from the next decision on. Whether r's key may revoke the delegation is
// judged at admission, against the delegation's chain.
//
// Any principal may post a revocation by a trusted hub of the policy in
// force; one by another key (a delegate revoking a sub-delegation) only
// the operator, so strangers' throwaway keys cannot fill the bounded
// bucket. Of one key's revocations of one delegation the earliest
// revoked_at is kept: a later-dated one changes nothing and Revoke
// returns the one held, with stored false.
func (n *Node) Revoke(ctx context.Context, p server.Principal, r attest.Revocation) (attest.Revocation, bool, error) {
	k, err := r.Verify()
	if err != nil {
		return r, false, server.Errorf(server.ErrInvalid, "revocation: %v", err)
	}
	if _, hub := n.Policy().Hub(k); !hub && !p.Operator() {
		return r, false, server.Errorf(server.ErrForbidden, "key %s is not a trusted hub: only the operator may post revocations by other keys", k.Short())
	}
	r.RevokedAt = r.RevokedAt.UTC()
	held, err := n.revoked(ctx)
	if err != nil {
		return r, false, err
	}
	if i := slices.IndexFunc(held[r.Delegation], func(o attest.Revocation) bool { return o.Key == r.Key }); i >= 0 && !r.RevokedAt.Before(held[r.Delegation][i].RevokedAt) {
		return held[r.Delegation][i], false, nil
	}
	n.revocations.mu.Lock()
	defer n.revocations.mu.Unlock()
	kept, stored, err := n.store.PutRevocation(ctx, r)
	if err != nil {
		if errors.Is(err, store.ErrFull) {
			return r, false, server.Errorf(server.ErrUnavailable, "%v", err)
		}
		return r, false, err
	}
	next := maps.Clone(n.revocations.byID)
	list := slices.DeleteFunc(slices.Clone(next[r.Delegation]), func(o attest.Revocation) bool { return o.Key == r.Key })
	next[r.Delegation] = append(list, kept)
	n.revocations.byID = next
	if !stored {
		return kept, false, nil
	}
	n.log.Info("delegation revoked", "delegation", r.Delegation, "key", r.Key, "revoked_at", r.RevokedAt, "by", p.Name)
	return kept, true, nil
}

// Revocations implements server.TrustBackend: every revocation the node
// holds, by delegation id, then key.
func (n *Node) Revocations(ctx context.Context, _ server.Principal) ([]attest.Revocation, error) {
	held, err := n.revoked(ctx)
	if err != nil {
		return nil, err
	}
	var out []attest.Revocation
	for _, id := range slices.Sorted(maps.Keys(held)) {
		rs := slices.Clone(held[id])
		slices.SortFunc(rs, func(x, y attest.Revocation) int { return strings.Compare(x.Key, y.Key) })
		out = append(out, rs...)
	}
	return out, nil
}

var _ server.TrustBackend = (*Node)(nil)
