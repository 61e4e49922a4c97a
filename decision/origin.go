package decision

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// OriginClaim is where a submission says it comes from. The node cannot
// check it by itself: whoever fills policy.Submission.Origin (a chain
// bridge, an authenticated peer, the operator) vouches for it; over HTTP it
// travels in the OriginHeader (see ParseOriginClaim).
type OriginClaim struct {
	// Kind and ID name the origin, as in policy.origins: "symbiote" and a
	// symbiote id, "hostchain" and "btc".
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Stake is the submitter's stake there (KLYNTAR: its freeze), ≥ 0.
	Stake float64 `json:"stake"`
}

// IsZero reports whether no origin is claimed.
func (o OriginClaim) IsZero() bool { return o.Kind == "" && o.ID == "" }

// String returns "kind:id" and, when the stake is not 0, ";stake=N".
func (o OriginClaim) String() string {
	s := o.Kind + ":" + o.ID
	if o.Stake != 0 {
		s += ";stake=" + strconv.FormatFloat(o.Stake, 'f', -1, 64)
	}
	return s
}

// OriginHeader is the HTTP request header carrying a submission's origin,
// in the form ParseOriginClaim reads.
const OriginHeader = "Andromeda-Origin"

// ParseOriginClaim parses "kind:id" optionally followed by ";stake=N", as
// in "hostchain:btc;stake=250". Errors name the part.
func ParseOriginClaim(s string) (OriginClaim, error) {
	s = strings.TrimSpace(s)
	head, params, _ := strings.Cut(s, ";")
	kind, id, ok := strings.Cut(strings.TrimSpace(head), ":")
	var o OriginClaim
	if !ok || !ValidOriginKind(kind) {
		return o, fmt.Errorf("origin %q: must be kind:id with kind [a-z0-9-]{1,32}, like hostchain:btc", s)
	}
	if !ValidOriginID(id) {
		return o, fmt.Errorf("origin %q: id must be 1 to 128 printable characters without spaces", s)
	}
	o.Kind, o.ID = kind, id
	if params != "" {
		v, ok := strings.CutPrefix(strings.TrimSpace(params), "stake=")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return OriginClaim{}, fmt.Errorf("origin %q: stake must be stake=N with N a number ≥ 0", s)
		}
		o.Stake = f
	}
	return o, nil
}

var originKind = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// ValidOriginKind reports whether kind is [a-z0-9-]{1,32}, the form of an
// origin's kind in a claim and in policy.origins alike.
func ValidOriginKind(kind string) bool { return originKind.MatchString(kind) }

// ValidOriginID reports whether id is 1 to 128 printable characters without
// spaces, the form of an origin's id in a claim and in policy.origins alike.
func ValidOriginID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
