package policy

import (
	"fmt"
	"maps"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/source"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// Bounds checked by Validate.
const (
	MaxRedirectDepth = 16
	maxListLen       = 1024
)

var (
	hubNameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	ruleNameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	languageRE  = regexp.MustCompile(`^[a-z][a-z0-9+#.-]{0,31}$`)
	keywordRE   = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	unitRE      = regexp.MustCompile(`^[A-Za-z0-9]{1,16}$`)
	containerRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)
	dormantRE   = regexp.MustCompile(`^[a-z0-9-]{1,63}\*?$|^\*$`)
)

// drivers are the driver names prefer_drivers may use.
var drivers = []string{string(manifest.DriverWasm), string(manifest.DriverProcess), string(manifest.DriverDocker)}

// Validate reports every problem with p, each with its path, as an Errors;
// nil when p is valid. It checks everything Compile needs except that rules
// compile (trusted hub keys must parse). Call it on a normalized policy
// (Parse and Compile normalize).
func (p Policy) Validate() error {
	var v validator
	v.between("max_description", p.MaxDescription, 0, DefaultMaxDescription)
	v.bytes("max_payload", p.MaxPayload, 1<<10, 4<<30)
	v.bytes("max_volume_size", p.MaxVolumeSize, 0, 1<<40)
	v.list("allowed_sources", p.AllowedSources, func(path, s string) {
		if err := source.CheckPattern(s); err != nil {
			v.fail(path, err.Error())
		}
	})

	var total float64
	names, keys := v.unique("trusted_hubs", "name"), v.unique("trusted_hubs", "key")
	for i, h := range p.TrustedHubs {
		path := strictdoc.IndexPath("trusted_hubs", i)
		if !hubNameRE.MatchString(h.Name) {
			v.fail(path+".name", "must be [a-z0-9][a-z0-9._-]{0,62}")
		} else {
			names.add(path+".name", h.Name, i)
		}
		if k, err := attest.ParsePublicKey(h.Key); err != nil {
			v.fail(path+".key", err.Error())
		} else {
			keys.add(path+".key", string(k), i)
		}
		if !(h.Weight > 0) || math.IsInf(h.Weight, 0) {
			v.fail(path+".weight", "must be a number more than 0")
		} else {
			total += h.Weight
		}
	}
	v.between("trust.max_depth", p.Trust.MaxDepth, 0, attest.MaxDelegationDepth)
	hubs := len(p.TrustedHubs) // a hub's tree is one signature, however many of its delegates sign
	v.quorum("require", p.Require, hubs, total)

	for _, drv := range slices.Sorted(maps.Keys(p.PreferDrivers)) {
		path := strictdoc.KeyPath("prefer_drivers", drv)
		if !slices.Contains(drivers, drv) {
			v.fail(path, "unknown driver: want wasm, process or docker")
		}
		v.list(path, p.PreferDrivers[drv], v.language)
	}
	v.list("keywords", p.Keywords, func(path, s string) {
		if !keywordRE.MatchString(s) {
			v.fail(path, "must be [a-z0-9-]{1,32}")
		}
	})
	v.list("network", p.Network.Hosts, func(path, s string) {
		if err := checkNetworkPattern(s); err != nil {
			v.fail(path, err.Error())
		}
	})

	l := p.Limits
	v.bytes("limits.memory.max", l.Memory.Max, 1<<20, 1<<40)
	v.over("limits.memory.over", l.Memory.Over)
	switch c := l.CPU.Max.Cores(); {
	case l.CPU.Max.IsZero():
		v.fail("limits.cpu.max", "must be set")
	case !(c > 0) || c > 1024:
		v.fail("limits.cpu.max", "must be more than 0 and at most 1024 cores")
	}
	v.over("limits.cpu.over", l.CPU.Over)
	switch d := l.Timeout.Max.Std(); {
	case l.Timeout.Max.IsZero():
		v.fail("limits.timeout.max", "must be set")
	case d < time.Millisecond || d > 24*time.Hour:
		v.fail("limits.timeout.max", "must be from 1ms to 24h")
	}
	v.over("limits.timeout.over", l.Timeout.Over)
	v.between("limits.pids.max", l.Pids.Max, 1, 1<<20)
	v.over("limits.pids.over", l.Pids.Over)
	v.between("limits.concurrency.max", l.Concurrency.Max, 1, 4096)
	v.over("limits.concurrency.over", l.Concurrency.Over)
	v.between("limits.actions_per_run.max", l.ActionsPerRun.Max, 1, contract.MaxActions)
	v.over("limits.actions_per_run.over", l.ActionsPerRun.Over)
	v.between("limits.services", l.Services, 0, 1<<20)

	if a := p.MinReward.Amount; a < 0 || math.IsInf(a, 0) || math.IsNaN(a) {
		v.fail("min_reward.amount", "must be a number ≥ 0")
	}
	if p.MinReward.Amount > 0 && !unitRE.MatchString(p.MinReward.Unit) || p.MinReward.Unit != "" && !unitRE.MatchString(p.MinReward.Unit) {
		v.fail("min_reward.unit", "must be [A-Za-z0-9]{1,16} when amount is more than 0")
	}

	p.Origins.validate(&v)

	containers := v.unique("containers", "name")
	for i, c := range p.Containers {
		path := strictdoc.IndexPath("containers", i)
		if !containerRE.MatchString(c.Name) {
			v.fail(path+".name", "must be a container name: [a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
		} else {
			containers.add(path+".name", c.Name, i)
		}
		v.list(path+".languages", c.Languages, v.language)
	}
	v.tooLong("containers", len(p.Containers))

	switch p.ContainerFallback {
	case FallbackNew, FallbackRefuse:
	default:
		v.fail("container_fallback", "must be new or refuse")
	}

	for _, lang := range slices.Sorted(maps.Keys(p.Registries)) {
		path := strictdoc.KeyPath("registries", lang)
		if !languageRE.MatchString(lang) {
			v.fail(path, "must be a language ([a-z][a-z0-9+#.-]{0,31}) or docker")
		}
		if lang == "docker" {
			v.list(path, p.Registries[lang], v.imageSource)
			continue
		}
		v.list(path, p.Registries[lang], func(path, s string) { v.url(path, s) })
	}
	v.list("peers", p.Peers, func(path, s string) { v.url(path, s) })
	v.between("redirect_depth", p.RedirectDepth, 0, MaxRedirectDepth)
	if a := p.Advertise; len(a.Services) > 0 || len(a.To) > 0 || a.Hops != 0 {
		if len(a.Services) == 0 {
			v.fail("advertise.services", "must name at least one service (a name, a prefix ending in *, or *)")
		}
		v.list("advertise.services", a.Services, func(path, s string) {
			if !dormantRE.MatchString(s) {
				v.fail(path, "must be a service name, optionally ending in * to match a prefix")
			}
		})
		v.list("advertise.to", a.To, func(path, s string) { v.url(path, s) })
		if len(a.To) == 0 && len(p.Peers) == 0 {
			v.fail("advertise.to", "must name the peers to advertise to, since peers names none")
		}
		if a.Hops != 0 {
			v.between("advertise.hops", a.Hops, 1, MaxRedirectDepth)
		}
	}

	v.list("dormant.services", p.Dormant.Services, func(path, s string) {
		if !dormantRE.MatchString(s) {
			v.fail(path, "must be a service name, optionally ending in * to match a prefix")
		}
	})
	v.list("dormant.keywords", p.Dormant.Keywords, func(path, s string) {
		if !keywordRE.MatchString(s) {
			v.fail(path, "must be [a-z0-9-]{1,32}")
		}
	})

	switch p.Upgrade.Growth {
	case GrowthAllow, GrowthReject:
	case GrowthAttest:
		if len(p.TrustedHubs) == 0 {
			v.fail("upgrade.growth", "attest needs trusted_hubs to count attestations")
		}
		if p.Upgrade.Require.IsZero() {
			v.fail("upgrade.require", "must require at least one signature or some weight when growth is attest")
		}
		if len(p.TrustedHubs) > 0 {
			v.quorum("upgrade.require", p.Upgrade.Require, hubs, total)
		}
	default:
		v.fail("upgrade.growth", "must be allow, attest or reject")
	}

	v.list("shared_targets", p.SharedTargets, func(path, s string) {
		if s == "" || len(s) > 128 || strings.ContainsAny(s, "\n\r") {
			v.fail(path, "must be one line of 1 to 128 characters")
		}
	})

	rules := v.unique("rules", "name")
	for i, r := range p.Rules {
		path := strictdoc.IndexPath("rules", i)
		if !ruleNameRE.MatchString(r.Name) {
			v.fail(path+".name", "must be [a-z0-9][a-z0-9-]{0,62}")
		} else {
			rules.add(path+".name", r.Name, i)
		}
		switch {
		case r.Service != "" || r.Digest != "" || !r.Timeout.IsZero():
			v.pluginRule(path, r)
		case strings.TrimSpace(r.Expr) == "":
			v.fail(path+".expr", "must not be empty")
		case len(r.Expr) > 4096:
			v.fail(path+".expr", "must be at most 4096 bytes")
		}
		if len(r.Message) > 1024 {
			v.fail(path+".message", "must be at most 1024 bytes")
		}
	}
	v.tooLong("rules", len(p.Rules))
	if len(v.errs) > 0 {
		return v.errs
	}
	return nil
}

type validator struct{ errs Errors }

func (v *validator) fail(path, rule string) {
	v.errs = append(v.errs, FieldError{Path: path, Rule: rule})
}

// unique finds the items of a list that repeat an earlier item's field.
type unique struct {
	v          *validator
	list, what string
	first      map[string]int // value → index of the first item with it
}

func (v *validator) unique(list, what string) *unique {
	return &unique{v: v, list: list, what: what, first: map[string]int{}}
}

// add notes that item i of the list has value; an item that repeats an
// earlier one fails at path, naming the earlier item.
func (u *unique) add(path, value string, i int) {
	if j, ok := u.first[value]; ok {
		u.v.fail(path, fmt.Sprintf("duplicate: %s has the same %s", strictdoc.IndexPath(u.list, j), u.what))
		return
	}
	u.first[value] = i
}

func (v *validator) between(path string, n, lo, hi int) {
	if n < lo || n > hi {
		v.fail(path, fmt.Sprintf("must be from %d to %d", lo, hi))
	}
}

func (v *validator) bytes(path string, b manifest.Bytes, lo, hi int64) {
	switch n := b.Int64(); {
	case b.IsZero():
		v.fail(path, "must be set")
	case n < lo || n > hi:
		v.fail(path, fmt.Sprintf("must be from %s to %s", formatBytes(lo), formatBytes(hi)))
	}
}

func (v *validator) over(path string, o Over) {
	if o != OverClamp && o != OverReject {
		v.fail(path, "must be clamp or reject")
	}
}

// quorum checks a quorum against the trusted hubs: their number and their
// total weight, neither of which delegation raises.
func (v *validator) quorum(path string, q Quorum, hubs int, total float64) {
	if q.Signatures < 0 {
		v.fail(path+".signatures", "must be ≥ 0")
	} else if q.Signatures > hubs {
		v.fail(path+".signatures", fmt.Sprintf("can never be reached: %d trusted hubs", hubs))
	}
	if q.Weight < 0 || math.IsInf(q.Weight, 0) || math.IsNaN(q.Weight) {
		v.fail(path+".weight", "must be a number ≥ 0")
	} else if q.Weight > total+1e-9 {
		v.fail(path+".weight", fmt.Sprintf("can never be reached: the trusted hubs weigh %s in all", formatFloat(total)))
	}
}

// list checks each item with check and reports duplicates and overlong lists.
func (v *validator) list(path string, items []string, check func(path, s string)) {
	seen := map[string]int{}
	for i, s := range items {
		p := strictdoc.IndexPath(path, i)
		if j := seen[s]; j > 0 {
			v.fail(p, fmt.Sprintf("duplicate of %s", strictdoc.IndexPath(path, j-1)))
			continue
		}
		seen[s] = i + 1
		check(p, s)
	}
	v.tooLong(path, len(items))
}

func (v *validator) tooLong(path string, n int) {
	if n > maxListLen {
		v.fail(path, fmt.Sprintf("must have at most %d entries", maxListLen))
	}
}

func (v *validator) language(path, s string) {
	if !languageRE.MatchString(s) {
		v.fail(path, "must be a language: [a-z][a-z0-9+#.-]{0,31}")
	}
}

func (v *validator) url(path, s string) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		v.fail(path, "must be an http or https URL: "+strings.TrimPrefix(err.Error(), "parse "))
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		v.fail(path, "must be an http or https URL with a host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		v.fail(path, "must not carry credentials, a query or a fragment")
	}
}
