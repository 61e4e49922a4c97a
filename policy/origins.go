package policy

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/andromeda-runner/andromeda/decision"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// Origins is what the policy says about where submissions come from
// (KLYNTAR: PREFER_SYMBIOTES, PREFER_HOSTCHAINS with MIN_FREEZE). It is
// written in one of two forms:
//
//	origins: [{kind: hostchain, id: btc, min_stake: 100}]   # an allowlist
//	origins:                                                  # a preference
//	  required: false
//	  prefer: [{kind: hostchain, id: btc, min_stake: 100}]
//	  min_stake: 0
//
// A bare list is an allowlist (required true), the meaning origins had
// before the object form existed, so that no existing config is loosened:
// a submission must name a listed origin with at least its min_stake. The
// object form with required false is a preference: a listed origin whose
// stake meets its min_stake is preferred, and any other submission (an
// unlisted origin, a listed one below its min_stake, or one naming no
// origin, whose stake is 0) is admitted when its stake meets the top-level
// min_stake. Preferred submissions go first in the node's admission queue
// (OriginRank). The zero Origins, the default, admits any origin or none,
// and prefers none.
type Origins struct {
	// Required makes Prefer an allowlist: a submission naming no listed
	// origin, or one below its min_stake, is not run here. Default false
	// in the object form; a bare list sets it.
	Required bool `json:"required" yaml:"required"`
	// Prefer are the listed origins, each with the least stake that
	// qualifies it. Default none.
	Prefer []Origin `json:"prefer,omitempty" yaml:"prefer"`
	// MinStake is the least stake an origin that is not preferred must
	// carry, ≥ 0; 0 (the default) admits any, including a submission
	// naming no origin. It must be 0 when Required is true (unlisted
	// origins are refused then).
	MinStake float64 `json:"min_stake" yaml:"min_stake"`

	// list records that the document wrote the bare list form, so that
	// Validate names items as origins[i] rather than origins.prefer[i].
	list bool
}

// originsFields is Origins decoded as a mapping, by the generic rules (the
// hook decodes Origins itself).
type originsFields Origins

// Listed reports whether any origin is listed.
func (o Origins) Listed() bool { return len(o.Prefer) > 0 }

// IsZero reports whether o is the default: no origin listed, nothing
// required, no stake for others. Such a policy leaves origins out of its
// canonical JSON.
func (o Origins) IsZero() bool { return !o.Required && len(o.Prefer) == 0 && o.MinStake == 0 }

// value is what o marshals to: the bare list for an allowlist, so a
// policy written in the list form keeps its canonical JSON and digest,
// the mapping otherwise.
func (o Origins) value() any {
	if o.Required && o.MinStake == 0 {
		if o.Prefer == nil {
			return []Origin{}
		}
		return o.Prefer
	}
	f := originsFields(o)
	f.list = false
	return f
}

// MarshalJSON writes the bare list for an allowlist, the mapping
// otherwise.
func (o Origins) MarshalJSON() ([]byte, error) { return json.Marshal(o.value()) }

// MarshalYAML writes the bare list for an allowlist, the mapping
// otherwise.
func (o Origins) MarshalYAML() (any, error) { return o.value(), nil }

// decodeOrigins reads the list form (an allowlist) or the mapping form.
func decodeOrigins(c *strictdoc.Cursor, v *strictdoc.Value, o *Origins) {
	switch v.Kind {
	case strictdoc.List:
		var list []Origin
		c.Decode(v, &list)
		// An empty list lists nothing, as before: any origin.
		*o = Origins{Required: len(list) > 0, Prefer: list, list: true}
	case strictdoc.Map:
		f := originsFields{}
		c.Decode(v, &f)
		f.list = false
		*o = Origins(f)
	default:
		c.Fail("must be a list of origins (an allowlist) or a mapping {required, prefer, min_stake}, not " + v.Kind.String())
	}
}

// validate reports the problems of o, named as the document wrote them.
func (o Origins) validate(v *validator) {
	list := "origins.prefer"
	if o.list {
		list = "origins"
	}
	seen := v.unique(list, "kind and id")
	for i, or := range o.Prefer {
		path := strictdoc.IndexPath(list, i)
		if !decision.ValidOriginKind(or.Kind) {
			v.fail(path+".kind", "must be [a-z0-9-]{1,32}, like symbiote or hostchain")
		}
		if !decision.ValidOriginID(or.ID) {
			v.fail(path+".id", "must be 1 to 128 printable characters without spaces")
		}
		seen.add(path, or.Kind+"\x00"+or.ID, i)
		if !validStake(or.MinStake) {
			v.fail(path+".min_stake", "must be a number ≥ 0")
		}
	}
	v.tooLong(list, len(o.Prefer))
	switch {
	case !validStake(o.MinStake):
		v.fail("origins.min_stake", "must be a number ≥ 0")
	case o.Required && o.MinStake != 0:
		v.fail("origins.min_stake", "must be 0 when required is true: origins not listed are refused then (set required: false to admit them at this stake)")
	}
	if o.Required && len(o.Prefer) == 0 {
		v.fail("origins.prefer", "must list at least one origin when required is true (an allowlist of none would refuse every submission)")
	}
}

func validStake(f float64) bool { return f >= 0 && !math.IsInf(f, 0) && !math.IsNaN(f) }

// The ranks OriginRank returns.
const (
	RankPreferred = 0 // a listed origin whose stake meets its min_stake
	RankOther     = 1 // everything else
)

// OriginRank is the place a submission from o takes in the node's
// admission queue when the node is at capacity (limits.services): lower
// goes first, and submissions of one rank go in the order they came.
// RankPreferred is a listed origin (origins.prefer, or the allowlist)
// whose stake meets its min_stake; RankOther is any other, including a
// submission naming no origin. OriginRank says nothing about whether o is
// admitted: Admit decides that.
func (c *Compiled) OriginRank(o OriginClaim) int {
	if i, ok := c.preferred(o); ok && o.Stake >= c.p.Origins.Prefer[i].MinStake {
		return RankPreferred
	}
	return RankOther
}

// preferred returns the index of o in the listed origins.
func (c *Compiled) preferred(o OriginClaim) (int, bool) {
	if o.IsZero() {
		return 0, false
	}
	i, ok := c.origins[originKey{o.Kind, o.ID}]
	return i, ok
}

// origin is the origins rule.
func (a *admission) origin() {
	o, ors := a.sub.Origin, a.c.p.Origins
	switch {
	case ors.IsZero() && o.IsZero():
		a.add("origins", true, "any origin accepted")
	case ors.IsZero():
		a.add("origins", true, "any origin accepted (submission from %s)", o)
	case ors.Required:
		a.allowlist()
	default:
		a.preference()
	}
}

// allowlist is the origins rule of an allowlist (required: true, or a bare
// list).
func (a *admission) allowlist() {
	o, list := a.sub.Origin, a.c.p.Origins.Prefer
	if o.IsZero() {
		a.add("origins", false, "the submission names no origin; origins lists %s", originList(list))
		return
	}
	i, ok := a.c.preferred(o)
	switch {
	case !ok:
		a.add("origins", false, "%s:%s is not in origins (%s)", o.Kind, o.ID, originList(list))
	case o.Stake < list[i].MinStake:
		a.add("origins", false, "%s:%s stake %s is below origins[%d].min_stake %s", o.Kind, o.ID, formatFloat(o.Stake), i, formatFloat(list[i].MinStake))
	default:
		a.add("origins", true, "%s:%s with stake %s (min_stake %s)", o.Kind, o.ID, formatFloat(o.Stake), formatFloat(list[i].MinStake))
	}
}

// preference is the origins rule of a preference (required: false): a
// listed origin at its min_stake is preferred; anything else is admitted
// at the min_stake for origins not preferred.
func (a *admission) preference() {
	o, ors := a.sub.Origin, a.c.p.Origins
	i, listed := a.c.preferred(o)
	if listed && o.Stake >= ors.Prefer[i].MinStake {
		a.add("origins", true, "%s:%s preferred (stake %s ≥ min_stake %s)", o.Kind, o.ID, formatFloat(o.Stake), formatFloat(ors.Prefer[i].MinStake))
		return
	}
	var who string
	switch {
	case o.IsZero():
		who = "no origin named"
	case listed:
		who = fmt.Sprintf("%s:%s stake %s is below origins.prefer[%d].min_stake %s", o.Kind, o.ID, formatFloat(o.Stake), i, formatFloat(ors.Prefer[i].MinStake))
	default:
		who = fmt.Sprintf("%s:%s", o.Kind, o.ID)
	}
	bar := formatFloat(ors.MinStake)
	switch {
	case o.Stake < ors.MinStake:
		a.add("origins", false, "%s: not preferred; unlisted origins need min_stake %s, it has stake %s", who, bar, formatFloat(o.Stake))
	case o.IsZero() || ors.MinStake == 0:
		a.add("origins", true, "%s: not preferred; unlisted origins need min_stake %s", who, bar)
	default:
		a.add("origins", true, "%s: not preferred; unlisted origins need min_stake %s (stake %s)", who, bar, formatFloat(o.Stake))
	}
}
