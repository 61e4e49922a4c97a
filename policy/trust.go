package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/attest"
)

// DefaultTrustDepth is trust.max_depth when the policy does not set it.
const DefaultTrustDepth = 2

// issueSkew is how far in the future of the decision time a delegation's
// issued_at may be (clocks differ a little).
const issueSkew = 5 * time.Minute

// TrustPolicy governs the trust tree: the trusted hubs are its roots, and a
// submission's delegations (package attest) hang other keys below them. A
// delegate's attestation counts its parent's weight times its share, for
// services within every scope on its path; the weight counted through one
// root never exceeds the root's weight; a key counts once.
//
// A delegation counts when its signature verifies, it has not expired at
// the decision time (Node.Now), its issued_at is at most five minutes
// after it, no revocation the node holds withdraws it (one signed by its
// parent or a key above it, dated no later than the decision time), the
// service is in its scope, and its delegate is no trusted hub (a hub counts
// as itself). A key several delegations reach is placed once, by the path
// giving it the most weight, then the shortest, then the earliest
// delegation. Hubs' own attestations count first, then their delegates'
// level by level, each in submission order, until the hub's weight is
// reached.
//
// A hub's tree is one voice: require.signatures counts the distinct
// trusted hubs whose tree (the hub itself or a delegate below it) has a
// counted attestation, so a hub cannot meet a quorum of signatures alone
// by delegating to keys it controls; submission.signers still lists every
// counted signer.
type TrustPolicy struct {
	// MaxDepth is how many delegation levels below a trusted hub count: 0
	// follows no delegation (only the hubs' own attestations count), 1
	// the hubs' delegates, 2 their delegates too. Each delegation's own
	// max_depth may shorten it. 0 to 16. Default 2.
	MaxDepth int `json:"max_depth" yaml:"max_depth"`
}

// signer is a key whose attestation counts: a trusted hub (a root) or a
// delegate placed in the tree.
type signer struct {
	name    string    // hub name, or the delegate's short key
	root    string    // the root hub's raw key
	weight  float64   // effective weight before the root's cap
	factors []float64 // root weight, then each share on the path
	path    []string  // names from the root to the parent, for reasons
	keys    []string  // raw keys from the root to this key, for revocation authority
	depth   int       // 0 for a root
	left    int       // how many further levels may hang below it
	limit   string    // what set left, for reasons
	via     int       // index of the delegation that placed it; -1 for a root
}

// edge is one delegation of the submission, judged.
type edge struct {
	p      attest.ParsedDelegation
	why    string // set when it does not count
	used   bool   // it placed its delegate
	parent string // raw keys
	child  string
}

// trustTree places the submission's delegations below the trusted hubs and
// gives each delegation a reason (rule delegations[i]), counted or why not.
// It fills a.tree: every key whose attestations count, by raw key.
func (a *admission) trustTree() {
	a.tree = map[string]*signer{}
	a.rootWeight = map[string]float64{}
	for raw, h := range a.c.hubs {
		a.tree[raw] = &signer{name: h.name, root: raw, weight: h.weight, factors: []float64{h.weight},
			keys: []string{raw}, left: a.c.p.Trust.MaxDepth, limit: "trust.max_depth " + strconv.Itoa(a.c.p.Trust.MaxDepth), via: -1}
		a.rootWeight[raw] = h.weight
	}
	if len(a.sub.Delegations) == 0 {
		return
	}
	now := a.node.Now
	if now.IsZero() {
		now = time.Unix(0, 0)
	}
	edges := make([]*edge, 0, len(a.sub.Delegations))
	ids := map[string]int{}
	for i, d := range a.sub.Delegations {
		e := &edge{}
		edges = append(edges, e)
		if i >= attest.MaxDelegations {
			e.why = fmt.Sprintf("a submission carries at most %d delegations", attest.MaxDelegations)
			continue
		}
		p, err := d.Parse()
		if err != nil {
			e.why = err.Error()
			continue
		}
		e.p, e.parent, e.child = p, string(p.Parent), string(p.Delegate)
		j, dup := ids[p.ID]
		switch {
		case a.c.p.Trust.MaxDepth == 0:
			e.why = "trust.max_depth is 0: this node follows no delegation"
		case dup:
			e.why = fmt.Sprintf("the same delegation as delegations[%d]", j)
		case !p.Valid():
			e.why = fmt.Sprintf("signature by %s does not verify", p.Parent.Short())
		case !now.Before(p.Expires):
			e.why = "expired at " + p.Expires.Format(time.RFC3339)
		case p.IssuedAt.After(now.Add(issueSkew)):
			e.why = "issued at " + p.IssuedAt.Format(time.RFC3339) + ", after the decision time " + now.UTC().Format(time.RFC3339)
		case a.revokedBy(p, []string{e.parent}, now) != "":
			e.why = a.revokedBy(p, []string{e.parent}, now) // by its parent: whatever its place
		case !p.Scope.Contains(a.m.Name, a.m.Keywords):
			e.why = scopeMiss(p.Scope, a.m.Name, a.m.Keywords)
		case a.c.hubs[e.child].name != "":
			e.why = fmt.Sprintf("delegate %s is a trusted hub (%s): it counts as itself", p.Delegate.Short(), a.c.hubs[e.child].name)
		}
		if !dup {
			ids[p.ID] = i
		}
	}
	// Place delegates best first: the candidate of highest weight, then
	// shortest path, then earliest delegation. Weights only shrink and
	// depths only grow along a path, so a key is placed once, at its best.
	for {
		best := -1
		var bw float64
		for i, e := range edges {
			if e.why != "" || e.used {
				continue
			}
			par, ok := a.tree[e.parent]
			if !ok || par.left < 1 || a.tree[e.child] != nil {
				continue
			}
			if why := a.revokedBy(e.p, par.keys, now); why != "" {
				e.why = why
				continue
			}
			w := par.weight * e.p.Share
			if best < 0 || w > bw+1e-12 || w > bw-1e-12 && par.depth+1 < a.tree[edges[best].parent].depth+1 {
				best, bw = i, w
			}
		}
		if best < 0 {
			break
		}
		e := edges[best]
		par := a.tree[e.parent]
		e.used = true
		left, limit := par.left-1, par.limit
		if e.p.MaxDepth < left {
			left, limit = e.p.MaxDepth, fmt.Sprintf("max_depth %d of delegations[%d]", e.p.MaxDepth, best)
		}
		a.tree[e.child] = &signer{
			name: e.p.Delegate.Short(), root: par.root, weight: bw,
			factors: append(slices.Clone(par.factors), e.p.Share),
			path:    append(slices.Clone(par.path), par.name),
			keys:    append(slices.Clone(par.keys), e.child),
			depth:   par.depth + 1, left: left, limit: limit, via: best,
		}
	}
	for i, e := range edges {
		rule := "delegations[" + strconv.Itoa(i) + "]"
		if e.used {
			s := a.tree[e.child]
			a.info(rule, true, "in the trust tree: %s → %s (weight %s, scope %s, expires %s)",
				strings.Join(s.path, " → "), s.name, weightString(s), e.p.Scope, e.p.Expires.Format(time.RFC3339))
			continue
		}
		if e.why == "" {
			e.why = a.unplaced(e)
		}
		a.info(rule, false, "not counted: %s", e.why)
	}
}

// unplaced says why a delegation that passed every check of its own was
// not placed in the tree.
func (a *admission) unplaced(e *edge) string {
	par, ok := a.tree[e.parent]
	s, placed := a.tree[e.child]
	switch {
	case !ok:
		return fmt.Sprintf("parent %s is not a trusted hub or a delegate in the trust tree", e.p.Parent.Short())
	case !placed:
		return fmt.Sprintf("beyond %s (%s is at depth %d)", par.limit, par.name, par.depth)
	}
	return fmt.Sprintf("%s is already in the trust tree through %s (weight %s); a key counts once",
		s.name, strings.Join(s.path, " → "), formatFloat(s.weight))
}

// revokedBy says whether a revocation the node holds, by one of keys (the
// delegation's parent and the keys above it), withdraws p at now.
func (a *admission) revokedBy(p attest.ParsedDelegation, keys []string, now time.Time) string {
	for _, r := range a.node.Revoked[p.ID] {
		k, err := attest.ParsePublicKey(r.Key)
		if err != nil || r.RevokedAt.After(now) || !slices.Contains(keys, string(k)) {
			continue
		}
		by := k.Short()
		if h, ok := a.c.hubs[string(k)]; ok {
			by = h.name
		}
		return fmt.Sprintf("revoked by %s at %s", by, r.RevokedAt.UTC().Format(time.RFC3339))
	}
	return ""
}

func scopeMiss(s attest.Scope, name string, keywords []string) string {
	if len(s.Services) > 0 && !(attest.Scope{Services: s.Services}).Contains(name, nil) {
		return fmt.Sprintf("scope services [%s] does not include service %s", strings.Join(s.Services, ", "), name)
	}
	kw := "none"
	if len(keywords) > 0 {
		kw = strings.Join(keywords, ", ")
	}
	return fmt.Sprintf("scope keywords [%s] does not include any keyword of service %s (%s)", strings.Join(s.Keywords, ", "), name, kw)
}

// weightString shows how a delegate's weight came about: "0.25 = 1 × 0.5 × 0.5".
func weightString(s *signer) string {
	parts := make([]string, len(s.factors))
	for i, f := range s.factors {
		parts[i] = formatFloat(f)
	}
	return formatFloat(s.weight) + " = " + strings.Join(parts, " × ")
}

// validAttestation is an attestation by a signer in the trust tree, over
// this service's digest, whose signature verifies.
type validAttestation struct {
	reason int // index of its reason in the decision
	index  int // in the submission
	by     *signer
	digest string
}

// countValid counts the valid attestations, the hubs' own first, then
// their delegates' level by level, each in submission order, so that a
// root's cap is spent the same way whatever order they came in; it fills
// each one's reason.
func (a *admission) countValid(valid []validAttestation) {
	order := slices.Clone(valid)
	slices.SortStableFunc(order, func(x, y validAttestation) int { return x.by.depth - y.by.depth })
	for _, v := range order {
		detail, ok := a.count(v.by, v.digest)
		a.d.Reasons[v.reason].OK, a.d.Reasons[v.reason].Detail = ok, detail
	}
}

// count adds signer s's attestation to the quorum, held to its root's cap,
// and says how: the detail of a counted reason, or why it adds nothing.
func (a *admission) count(s *signer, digest string) (string, bool) {
	left := a.rootWeight[s.root]
	w := min(s.weight, left)
	root := a.tree[s.root].name
	switch {
	case s.weight <= 1e-12:
		return fmt.Sprintf("not counted: %s through %s has weight %s: its share is too small, the weight rounds to 0",
			s.name, strings.Join(s.path, " → "), weightString(s)), false
	case w <= 1e-12:
		return fmt.Sprintf("not counted: %s through %s would add weight %s, but %s's weight %s is reached already (a hub's tree counts at most the hub's weight)",
			s.name, strings.Join(s.path, " → "), formatFloat(s.weight), root, formatFloat(a.tree[s.root].weight)), false
	}
	a.rootWeight[s.root] = left - w
	a.signers = append(a.signers, s.name)
	if !slices.Contains(a.roots, s.root) {
		a.roots = append(a.roots, s.root) // a hub's tree is one voice in the quorum's signatures
	}
	a.weight += w
	if s.via < 0 {
		return fmt.Sprintf("counted: %s (weight %s) signed %s", s.name, formatFloat(s.weight), attest.ShortDigest(digest)), true
	}
	detail := fmt.Sprintf("counted: %s via %s (weight %s) signed %s", s.name, strings.Join(s.path, " → "), weightString(s), attest.ShortDigest(digest))
	if w < s.weight-1e-12 {
		detail += fmt.Sprintf("; only %s of it counts: %s's tree counts at most %s", formatFloat(w), root, formatFloat(a.tree[s.root].weight))
	}
	return detail, true
}

// notSigner says why key, found in no place of the trust tree, does not
// count.
func (a *admission) notSigner(key attest.PublicKey) string {
	for i, d := range a.sub.Delegations {
		if k, err := attest.ParsePublicKey(d.Delegate); err == nil && k.Equal(key) && i < attest.MaxDelegations {
			return fmt.Sprintf("not counted: key %s is not a trusted hub, and its delegation (delegations[%d]) does not count", key.Short(), i)
		}
	}
	return fmt.Sprintf("not counted: key %s is not a trusted hub", key.Short())
}

// Hub returns the name of the trusted hub whose key is key, and whether
// key is one.
func (c *Compiled) Hub(key attest.PublicKey) (string, bool) {
	h, ok := c.hubs[string(key)]
	return h.name, ok
}
