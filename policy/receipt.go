package policy

import (
	"time"

	"github.com/andromeda-runner/andromeda/attest"
)

// NewReceipt returns the unsigned receipt of decision d on sub under c,
// taken at at; sign it with attest.SignReceipt and the node key. The
// service digest is sub.Digest, or the manifest's source.digest when the
// submission was judged before its fetch.
func (c *Compiled) NewReceipt(sub Submission, d Decision, at time.Time) attest.Receipt {
	r := attest.Receipt{
		ServiceDigest: sub.Digest,
		PolicyDigest:  c.digest,
		Verdict:       string(d.Verdict),
		Reasons:       make([]attest.Reason, len(d.Reasons)),
		DecidedAt:     at.UTC(),
	}
	if m := sub.Manifest; m != nil {
		r.Service, r.Version = m.Name, m.Version
		if r.ServiceDigest == "" {
			r.ServiceDigest = m.Source.Digest
		}
	}
	if f := d.Forward; f != nil {
		r.ForwardTo, r.RedirectDepth = f.Peer, f.Depth
	}
	for i, reason := range d.Reasons {
		r.Reasons[i] = attest.Reason{Rule: reason.Rule, OK: reason.OK, Detail: reason.Detail}
	}
	return r
}
