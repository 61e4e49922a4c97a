package policy

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/decision"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/source"
)

// The admission decision's data types live in package decision, a leaf the
// API client can import without the policy engine; these aliases keep
// policy.Decision and the rest working for callers of this package.
type (
	Verdict     = decision.Verdict
	Decision    = decision.Decision
	ForwardTo   = decision.ForwardTo
	Reason      = decision.Reason
	Limits      = decision.Limits
	OriginClaim = decision.OriginClaim
)

// The verdicts (see decision.Run).
const (
	Run     = decision.Run
	Forward = decision.Forward
	Reject  = decision.Reject
)

// OriginHeader is the HTTP request header carrying a submission's origin
// (decision.OriginHeader).
const OriginHeader = decision.OriginHeader

// ParseOriginClaim parses an origin claim as decision.ParseOriginClaim does.
func ParseOriginClaim(s string) (OriginClaim, error) { return decision.ParseOriginClaim(s) }

// Submission is everything admission looks at.
type Submission struct {
	// Manifest is the service's manifest, validated and normalized
	// (manifest.Check or Load). Required; Admit does not modify it.
	Manifest *manifest.Service
	// Digest is the canonical archive digest (archive.Info.Digest). For a
	// source.location service admitted before its fetch, leave it empty:
	// the manifest's source.digest is used, and the fetch must check it.
	Digest string
	// PayloadSize is the archive's size in bytes; 0 for a source.location
	// service not fetched yet (the fetch enforces max_payload while
	// streaming).
	PayloadSize int64
	// Attestations came with the submission, malformed ones included:
	// each gets a reason saying whether it counts, and why not.
	Attestations []attest.Attestation
	// Delegations came with the submission (attest.Delegation): they hang
	// other keys below the trusted hubs (see TrustPolicy). Each gets a
	// reason, in the tree or why not.
	Delegations []attest.Delegation
	// Origin is where the submission says it comes from; zero when it says
	// nothing.
	Origin OriginClaim
	// Hops are the peers a forwarded submission came through, oldest
	// first; empty for a submission made to this node.
	Hops []string
	// Depth is the redirect depth a forwarded submission carries (the
	// sender's Decision.Forward.Depth); ignored when Hops is empty.
	Depth int
	// Previous is the admitted version this one replaces; nil for a new
	// service. Admit lists what grew from it (Diff).
	Previous *manifest.Service
	// Drivers are other drivers the service accepts besides
	// Manifest.Runtime.Driver, in the author's order of preference. The
	// manifest names one driver today, so this is usually empty.
	Drivers []string
	// Plugins are the answers of the policy's admission plugins by rule
	// name (Compiled.Plugins), filled by the node that consulted them. A
	// plugin rule without an answer fails.
	Plugins map[string]PluginAnswer
}

// Node is what admission knows about the node deciding.
type Node struct {
	// Drivers are the node's drivers by name (wasm, process, docker).
	Drivers map[string]DriverInfo
	// Services is the number of services admitted on the node now.
	Services int
	// Targets maps each target operated on the node to the service
	// operating it.
	Targets map[string]string
	// Self is this node's base URL as its peers know it; never forwarded
	// to. Optional.
	Self string
	// Now is the decision time, node.now for rules. Zero: the Unix epoch
	// (Admit reads no clock).
	Now time.Time
	// Revoked are the revocations the node holds, by the id of the
	// delegation they revoke, their signatures verified by whoever filled
	// it. One counts when its key is the delegation's parent or a key above
	// it in the trust tree and its revoked_at is not after Now.
	Revoked map[string][]attest.Revocation
}

// DriverInfo says whether a driver can take services on this node.
type DriverInfo struct {
	// Enabled is false when the driver's self-test failed.
	Enabled bool
	// Reason says why it is disabled.
	Reason string
	// Network reports whether the driver can grant (and enforce) network
	// access; a driver that cannot only takes services with network none.
	Network bool
	// Languages are the languages the driver has toolchains for; empty:
	// any (wasm, docker).
	Languages []string
	// Disabled are languages the driver knows but has disabled here (a
	// runtime registered by descriptor that failed its certification),
	// each with the reason.
	Disabled map[string]string
}

// admission is one Admit call in progress.
type admission struct {
	c      *Compiled
	sub    Submission
	m      *manifest.Service
	node   Node
	d      Decision
	failed []string // rules that failed
	fatal  []string // failed rules another node could not satisfy either
	digest string

	signers []string // trusted hubs and delegates whose attestations count
	roots   []string // raw keys of the trusted hubs whose trees they are in: the quorum's signatures
	weight  float64

	preliminary bool // plugin rules are not consulted yet (Preliminary)

	tree       map[string]*signer // raw key → its place in the trust tree (trust.go)
	rootWeight map[string]float64 // root's raw key → weight its tree may still count
}

func (a *admission) add(rule string, ok bool, format string, args ...any) {
	a.d.Reasons = append(a.d.Reasons, Reason{Rule: rule, OK: ok, Detail: fmt.Sprintf(format, args...)})
	if !ok {
		a.failed = append(a.failed, rule)
	}
}

// info adds a reason that does not decide anything by itself (an
// attestation that does not count: only the quorum decides).
func (a *admission) info(rule string, ok bool, format string, args ...any) {
	a.d.Reasons = append(a.d.Reasons, Reason{Rule: rule, OK: ok, Detail: fmt.Sprintf(format, args...)})
}

// failFatal adds a failed reason that forwarding cannot fix.
func (a *admission) failFatal(rule string, format string, args ...any) {
	a.add(rule, false, format, args...)
	a.fatal = append(a.fatal, rule)
}

// Admit decides what to do with a submission. Every rule appends a reason,
// passed or failed, in this order: max_payload, max_description,
// allowed_sources (and source.digest on a mismatch), delegations[i] (one
// per delegation: in the trust tree or why not), attestations[i] (one
// per attestation: counted or why not; these never decide by themselves),
// trusted_hubs (the quorum), origins, keywords, min_reward, driver,
// prefer_drivers, network, limits.memory, limits.cpu, limits.timeout,
// limits.pids, limits.concurrency, limits.actions_per_run,
// max_volume_size, images, registries, containers, target, upgrade,
// rules.NAME (each rule in order, an admission plugin's answer folded in
// where its rule stands), dormant, and, when the service does not run
// here, peers or redirect_depth.
//
// The verdict is Run when no rule failed. Otherwise it is Forward, to the
// first peer not already on the submission's path, when peers are listed,
// redirect depth is left, and every failure is one another node might not
// share; a digest mismatch, a target conflict or a refused upgrade are this
// node's business, so they Reject, as does a failure with no peer or no
// depth left.
//
// Admit is deterministic and never runs service code. It verifies the
// ed25519 signature of an attestation only when the key is trusted (a hub,
// or a delegate in the trust tree), the digest is the service's and the
// signer has not been counted yet, and looks at no more than
// attest.MaxAttestations attestations and attest.MaxDelegations
// delegations.
func (c *Compiled) Admit(sub Submission, node Node) Decision {
	return c.admit(sub, node, false)
}

func (c *Compiled) admit(sub Submission, node Node, preliminary bool) Decision {
	a := &admission{c: c, sub: sub, m: sub.Manifest, node: node, d: Decision{Verdict: Run}, preliminary: preliminary}
	if a.m == nil {
		a.failFatal("manifest", "the submission carries no manifest")
		a.d.Verdict = Reject
		return a.d
	}
	a.digest = sub.Digest
	if a.digest == "" {
		a.digest = a.m.Source.Digest
	}
	a.payload()
	a.description()
	a.source()
	a.attestations()
	a.origin()
	a.keywords()
	a.reward()
	a.driver()
	a.network()
	a.limits()
	a.volumes()
	a.images()
	a.registries()
	a.containers()
	a.target()
	growth := a.upgrade()
	a.rules(growth)
	a.dormant()
	a.verdict()
	return a.d
}

func (a *admission) payload() {
	limit := a.c.p.MaxPayload
	switch size := a.sub.PayloadSize; {
	case size == 0 && a.m.Source.Location != "":
		a.add("max_payload", true, "archive to be fetched from source.location: max_payload %s applies while it streams in", limit)
	case size == 0 && a.m.Source.Git != "":
		a.add("max_payload", true, "repository to be fetched from source.git: max_payload %s caps the bytes downloaded", limit)
	case size > limit.Int64():
		a.add("max_payload", false, "archive is %s, above max_payload %s", sizeString(size), limit)
	default:
		a.add("max_payload", true, "archive is %s (max_payload %s)", sizeString(size), limit)
	}
}

func (a *admission) description() {
	n, limit := utf8.RuneCountInString(a.m.Description), a.c.p.MaxDescription
	if n == 0 {
		a.add("max_description", true, "no description (max_description %d)", limit)
		return
	}
	if n > limit {
		a.add("max_description", false, "description has %d characters, above max_description %d", n, limit)
		return
	}
	a.add("max_description", true, "description has %d characters (max_description %d)", n, limit)
}

func (a *admission) source() {
	loc, field := a.m.Source.Location, "source.location"
	if a.m.Source.Git != "" {
		loc, field = a.m.Source.Git, "source.git"
	}
	if loc == "" {
		a.add("allowed_sources", true, "no source.location: the archive came with the submission")
	} else if err := source.CheckLocation(loc, a.c.p.AllowedSources); err != nil {
		host := loc
		if u, perr := url.Parse(loc); perr == nil {
			host = u.Host
		}
		switch {
		case !errors.Is(err, source.ErrNotAllowed):
			a.add("allowed_sources", false, "%s %s", field, err)
		case len(a.c.p.AllowedSources) == 0:
			a.add("allowed_sources", false, "%s %s: allowed_sources is empty, so this node fetches from nowhere", field, loc)
		default:
			a.add("allowed_sources", false, "host %s of %s %s is not in allowed_sources", host, field, loc)
		}
	} else if field == "source.git" {
		a.add("allowed_sources", true, "source.git %s (commit %s) is on an allowed host", loc, a.m.Source.Commit)
	} else {
		a.add("allowed_sources", true, "source.location %s is on an allowed host", loc)
	}
	if sd := a.m.Source.Digest; sd != "" && a.sub.Digest != "" && sd != a.sub.Digest {
		a.failFatal("source.digest", "the archive's digest is %s, the manifest declares %s", a.sub.Digest, sd)
	}
}

// attestations gives each delegation and attestation a reason and checks
// the quorum.
func (a *admission) attestations() {
	a.trustTree()
	seen := map[string]int{} // raw key → index of the counted attestation
	var valid []validAttestation
	for i, at := range a.sub.Attestations {
		rule := "attestations[" + strconv.Itoa(i) + "]"
		if i >= attest.MaxAttestations {
			a.info(rule, false, "not counted: a submission carries at most %d attestations", attest.MaxAttestations)
			continue
		}
		p, err := at.Parse()
		if err != nil {
			a.info(rule, false, "not counted: %v", err)
			continue
		}
		hub, trusted := a.tree[string(p.Key)]
		switch {
		case !trusted:
			a.info(rule, false, "%s", a.notSigner(p.Key))
		case p.Digest != a.digest:
			a.info(rule, false, "not counted: %s signed %s, not this service's digest %s", hub.name, attest.ShortDigest(p.Digest), attest.ShortDigest(a.digest))
		case seen[string(p.Key)] > 0:
			a.info(rule, false, "not counted: %s already signed (attestations[%d]); a signer counts once", hub.name, seen[string(p.Key)]-1)
		case !p.Valid():
			a.info(rule, false, "not counted: signature by %s does not verify", hub.name)
		default:
			seen[string(p.Key)] = i + 1
			valid = append(valid, validAttestation{reason: len(a.d.Reasons), index: i, by: hub, digest: p.Digest})
			a.info(rule, true, "") // countValid says how it counts
		}
	}
	a.countValid(valid)
	q := a.c.p.Require
	have := a.trustString()
	switch {
	case q.IsZero():
		a.add("trusted_hubs", true, "%s; none required", have)
	case a.meets(q):
		a.add("trusted_hubs", true, "%s; require %s", have, quorumString(q))
	default:
		a.add("trusted_hubs", false, "%s; require %s", have, quorumString(q))
	}
}

func (a *admission) meets(q Quorum) bool {
	return len(a.roots) >= q.Signatures && a.weight+1e-9 >= q.Weight
}

func (a *admission) keywords() {
	kw := a.m.Keywords
	switch {
	case len(a.c.keywords) == 0:
		a.add("keywords", true, "any keywords accepted")
	case len(kw) == 0:
		a.add("keywords", false, "the service has no keywords; this node accepts %s", strings.Join(a.c.p.Keywords, ", "))
	default:
		var match []string
		for _, k := range kw {
			if a.c.keywords[k] {
				match = append(match, k)
			}
		}
		if len(match) == 0 {
			a.add("keywords", false, "none of %s is accepted; this node accepts %s", strings.Join(kw, ", "), strings.Join(a.c.p.Keywords, ", "))
		} else {
			a.add("keywords", true, "%s accepted", strings.Join(match, ", "))
		}
	}
}

func (a *admission) reward() {
	floor, r := a.c.p.MinReward, a.m.Reward
	offer := "nothing"
	if r.Amount > 0 {
		offer = formatFloat(r.Amount) + " " + r.Unit
	}
	want := formatFloat(floor.Amount) + " " + floor.Unit
	switch {
	case floor.Amount == 0:
		a.add("min_reward", true, "offers %s; no minimum reward", offer)
	case r.Amount == 0:
		a.add("min_reward", false, "offers nothing; min_reward is %s", want)
	case r.Unit != floor.Unit:
		a.add("min_reward", false, "offers %s; min_reward is in %s", offer, floor.Unit)
	case r.Amount < floor.Amount:
		a.add("min_reward", false, "offers %s, less than min_reward %s", offer, want)
	default:
		a.add("min_reward", true, "offers %s (min_reward %s)", offer, want)
	}
}

// driver picks the driver: among the drivers the service accepts that are
// usable here, the first whose prefer_drivers lists its language, else the
// first. A process service in a language the docker driver runs in its
// runtime images (node, python, exec) also accepts docker, after its own
// driver, but only where prefer_drivers.docker lists its language.
func (a *admission) driver() {
	lang := a.m.Runtime.Language
	cands := []string{string(a.m.Runtime.Driver)}
	for _, d := range a.sub.Drivers {
		if !slices.Contains(cands, d) {
			cands = append(cands, d)
		}
	}
	docker := string(manifest.DriverDocker)
	if a.m.Runtime.Driver == manifest.DriverProcess && slices.Contains(DockerLanguages, lang) &&
		!slices.Contains(cands, docker) && a.c.prefer[docker][lang] {
		cands = append(cands, docker)
	}
	// A driver that cannot give a sandbox network still takes a service
	// whose grant its http actions use: the node's executor reaches the
	// granted hosts for it (seed 000's "network through actions").
	needNet := !a.m.Capabilities.Network.None()
	throughActions := needNet && slices.Contains(a.m.Capabilities.Actions, "http")
	var usable, why []string
	for _, name := range cands {
		info, known := a.node.Drivers[name]
		switch {
		case !known:
			why = append(why, fmt.Sprintf("driver %s is not built into this node", name))
		case !info.Enabled:
			why = append(why, fmt.Sprintf("driver %s is disabled on this node: %s", name, info.Reason))
		case info.Disabled[lang] != "":
			why = append(why, fmt.Sprintf("driver %s: language %s is disabled on this node: %s", name, lang, info.Disabled[lang]))
		case name == docker && a.m.Runtime.Driver == manifest.DriverProcess && !slices.Contains(info.Languages, lang):
			// A process service runs in the runtime image the node
			// configures for its language; none configured is none.
			var images []string // "any" is its image services'
			for _, l := range info.Languages {
				if slices.Contains(DockerLanguages, l) {
					images = append(images, l)
				}
			}
			why = append(why, fmt.Sprintf("driver docker has no runtime image for %s here (it has %s; the node's docker.images sets them)", orNone(lang), orNoneList(images)))
		case len(info.Languages) > 0 && !slices.Contains(info.Languages, lang) && name != docker: // an image brings its own toolchain
			what := lang + " toolchain"
			if lang == "" {
				what = "toolchain for a service that names no language"
			}
			why = append(why, fmt.Sprintf("driver %s has no %s here (it has %s)", name, what, strings.Join(info.Languages, ", ")))
		case needNet && !info.Network && !throughActions:
			why = append(why, fmt.Sprintf("driver %s cannot grant network access (a service that declares the http action kind is granted its network through its actions on any driver)", name))
		default:
			usable = append(usable, name)
		}
	}
	if len(usable) == 0 {
		a.d.Driver = cands[0]
		a.add("driver", false, "%s", strings.Join(why, "; "))
		a.add("prefer_drivers", true, "no usable driver to choose")
		return
	}
	chosen, preferred := usable[0], ""
	for _, name := range usable {
		if a.c.prefer[name][lang] {
			chosen, preferred = name, name
			break
		}
	}
	a.d.Driver = chosen
	a.add("driver", true, "driver %s is available", chosen)
	switch {
	case preferred != "":
		a.add("prefer_drivers", true, "prefer_drivers.%s lists %s", preferred, lang)
	case len(a.c.prefer) == 0:
		a.add("prefer_drivers", true, "no preference set")
	case len(usable) == 1:
		a.add("prefer_drivers", true, "the service accepts only %s here; no preference for %s applies", chosen, orNone(lang))
	default:
		a.add("prefer_drivers", true, "no usable driver prefers %s; the service's first choice %s", orNone(lang), chosen)
	}
}

func (a *admission) network() {
	req := a.m.Capabilities.Network
	a.d.Network = req.String()
	ceil := a.c.p.Network
	switch {
	case req.None():
		a.add("network", true, "no network requested")
	case ceil.Any:
		a.add("network", true, "network %s granted (ceiling any)", a.d.Network)
	case req.Any:
		a.add("network", false, "network any requested, above the ceiling %s", ceil)
	default:
		var out []string
		for _, h := range req.Hosts {
			if !allows(a.c.network, h) {
				out = append(out, h)
			}
		}
		if len(out) > 0 {
			a.add("network", false, "%s not within the ceiling %s", strings.Join(out, ", "), ceil)
		} else {
			a.add("network", true, "network %s granted (ceiling %s)", a.d.Network, ceil)
		}
	}
}

func (a *admission) limits() {
	r, l := a.m.Resources, a.c.p.Limits
	a.d.Limits.Memory = ceiling(a, "limits.memory", r.Memory.Int64(), l.Memory.Max.Int64(), l.Memory.Over, memory(r.Memory), memory(l.Memory.Max))
	a.d.Limits.CPU = ceiling(a, "limits.cpu", r.CPU.Cores(), l.CPU.Max.Cores(), l.CPU.Over, cores(r.CPU), cores(l.CPU.Max))
	d := ceiling(a, "limits.timeout", r.Timeout.Std(), l.Timeout.Max.Std(), l.Timeout.Over, r.Timeout.String(), l.Timeout.Max.String())
	a.d.Limits.TimeoutMS = d.Milliseconds()
	a.d.Limits.Pids = ceiling(a, "limits.pids", r.Pids, l.Pids.Max, l.Pids.Over, strconv.Itoa(r.Pids), strconv.Itoa(l.Pids.Max))
	a.d.Limits.Concurrency = ceiling(a, "limits.concurrency", r.Concurrency, l.Concurrency.Max, l.Concurrency.Over, strconv.Itoa(r.Concurrency), strconv.Itoa(l.Concurrency.Max))
	// A service that sets no actions per run gets what the node allows.
	if perRun := a.m.Capabilities.Caps.ActionsPerRun; perRun > 0 {
		a.d.Limits.ActionsPerRun = ceiling(a, "limits.actions_per_run", perRun, l.ActionsPerRun.Max, l.ActionsPerRun.Over, strconv.Itoa(perRun), strconv.Itoa(l.ActionsPerRun.Max))
	} else {
		a.d.Limits.ActionsPerRun = min(l.ActionsPerRun.Max, contract.MaxActions)
		a.add("limits.actions_per_run", true, "not set: the ceiling %d", a.d.Limits.ActionsPerRun)
	}
}

// ceiling applies one ceiling; reqText and maxText show the values as
// written.
func ceiling[T int | int64 | float64 | time.Duration](a *admission, rule string, req, ceil T, over Over, reqText, maxText string) T {
	switch {
	case req <= ceil:
		a.add(rule, true, "%s (ceiling %s)", reqText, maxText)
		return req
	case over == OverReject:
		a.add(rule, false, "requested %s, above the ceiling %s (over: reject)", reqText, maxText)
		return req
	}
	a.add(rule, true, "requested %s, clamped to the ceiling %s", reqText, maxText)
	return ceil
}

// memory shows a size as written, with "bytes" after a plain number.
func memory(b manifest.Bytes) string {
	if strconv.FormatInt(b.Int64(), 10) == b.String() {
		return b.String() + " bytes"
	}
	return b.String()
}

func cores(c manifest.CPU) string {
	switch {
	case strings.HasSuffix(c.String(), "m"):
		return c.String()
	case c.Cores() == 1:
		return c.String() + " core"
	}
	return c.String() + " cores"
}

func (a *admission) registries() {
	lang := a.m.Runtime.Language
	drv := a.d.Driver
	var parts []string
	if a.imageService() {
		detail, ok := a.imageRegistries()
		if !ok {
			a.add("registries", false, "%s", detail)
			return
		}
		if detail != "" {
			parts = append(parts, detail)
		}
	}
	switch regs := a.c.p.Registries[lang]; {
	case drv == string(manifest.DriverWasm):
		parts = append(parts, "a wasm service installs no dependencies")
	case lang == "":
		parts = append(parts, "no language: no dependency registry")
	case len(regs) == 0:
		parts = append(parts, fmt.Sprintf("%s dependencies install from the toolchain's default registry", lang))
	default:
		a.d.Registries = slices.Clone(regs)
		parts = append(parts, fmt.Sprintf("%s dependencies install from %s", lang, strings.Join(regs, ", ")))
	}
	a.add("registries", true, "%s", strings.Join(parts, "; "))
}

func (a *admission) containers() {
	if a.d.Driver != string(manifest.DriverDocker) {
		a.add("containers", true, "not a docker service")
		return
	}
	lang := a.m.Runtime.Language
	for _, c := range a.c.p.Containers {
		if len(c.Languages) == 0 || slices.Contains(c.Languages, lang) {
			a.d.Container, a.d.Fallback = c.Name, a.c.p.ContainerFallback
			if a.d.Fallback == FallbackRefuse {
				a.add("containers", true, "placed into the existing container %s; if it is not running at deploy, the deploy fails (container_fallback refuse)", c.Name)
			} else {
				a.add("containers", true, "placed into the existing container %s; if it is not running at deploy, new containers of its own (container_fallback new)", c.Name)
			}
			return
		}
	}
	if len(a.c.p.Containers) == 0 {
		a.add("containers", true, "a new container (no existing containers listed)")
		return
	}
	a.add("containers", true, "a new container: no listed container hosts %s", orNone(lang))
}

func (a *admission) target() {
	t := a.m.Target
	owner, taken := a.node.Targets[t]
	switch {
	case t == "":
		a.add("target", true, "no target")
	case a.c.shared[t]:
		a.add("target", true, "target %s is shared (shared_targets)", t)
	case taken && owner != a.m.Name:
		a.failFatal("target", "target %s is operated by service %s and not in shared_targets", t, owner)
	case taken:
		a.add("target", true, "target %s is already this service's", t)
	default:
		a.add("target", true, "target %s is free", t)
	}
}

func (a *admission) upgrade() []Growth {
	prev := a.sub.Previous
	if prev == nil {
		a.add("upgrade", true, "a new service")
		return nil
	}
	g := Diff(prev, a.m)
	a.d.Growth = g
	from := "upgrade from " + prev.Version
	if len(g) == 0 {
		a.add("upgrade", true, "%s: nothing grew", from)
		return g
	}
	grew := growthSummary(g)
	switch u := a.c.p.Upgrade; u.Growth {
	case GrowthReject:
		a.failFatal("upgrade", "%s grows %s; upgrade.growth is reject: remove the service to grant more", from, grew)
	case GrowthAttest:
		have := a.trustString()
		if a.meets(u.Require) {
			a.add("upgrade", true, "%s grows %s; fresh attestations reach upgrade.require (%s)", from, grew, have)
		} else {
			a.failFatal("upgrade", "%s grows %s; upgrade.growth attest needs %s, the new version has %s", from, grew, quorumString(u.Require), have)
		}
	default:
		a.add("upgrade", true, "%s grows %s (upgrade.growth allow)", from, grew)
	}
	return g
}

func (a *admission) rules(growth []Growth) {
	if len(a.c.rules) == 0 {
		return
	}
	prev := ""
	if a.sub.Previous != nil {
		prev = a.sub.Previous.Version
	}
	drivers := make(map[string]bool, len(a.node.Drivers))
	for name, info := range a.node.Drivers {
		drivers[name] = info.Enabled
	}
	now := a.node.Now
	if now.IsZero() {
		now = time.Unix(0, 0)
	}
	act := &activation{
		service: newCELService(a.m),
		submission: &celSubmission{
			Digest: a.digest, Payload: a.sub.PayloadSize,
			Origin: celOrigin{Kind: a.sub.Origin.Kind, ID: a.sub.Origin.ID, Stake: a.sub.Origin.Stake},
			Hops:   nonNil(a.sub.Hops), Signers: nonNil(a.signers), Weight: a.weight,
			Upgrade: a.sub.Previous != nil, Previous: prev, Growth: growthNames(growth),
		},
		node: &celNode{Drivers: drivers, Services: int64(a.node.Services), Now: now.UTC()},
	}
	for _, r := range a.c.rules {
		if r.service != "" {
			a.plugin(r)
			continue
		}
		rule := "rules." + r.name
		out, _, err := r.prg.Eval(act)
		switch {
		case err != nil:
			a.add(rule, false, "does not evaluate: %v", err)
		case out.Value() == true:
			a.add(rule, true, "holds")
		default:
			a.add(rule, false, "%s", r.message)
		}
	}
}

func (a *admission) dormant() {
	dp := a.c.p.Dormant
	why := ""
	switch {
	case dp.All:
		why = "dormant.all"
	default:
		for i, pat := range dp.Services {
			if prefix, ok := strings.CutSuffix(pat, "*"); ok && strings.HasPrefix(a.m.Name, prefix) || pat == a.m.Name {
				why = fmt.Sprintf("dormant.services[%d] (%s)", i, pat)
				break
			}
		}
		if why == "" {
			for _, k := range a.m.Keywords {
				if slices.Contains(dp.Keywords, k) {
					why = fmt.Sprintf("dormant.keywords (%s)", k)
					break
				}
			}
		}
	}
	if why == "" {
		a.add("dormant", true, "starts when admitted")
		return
	}
	a.d.Dormant = true
	a.add("dormant", true, "dormant by %s: admitted, started on its first trigger", why)
}

// verdict settles Run, Forward or Reject.
func (a *admission) verdict() {
	if len(a.failed) == 0 {
		return
	}
	a.d.Dormant = false
	a.d.Verdict = Reject
	p := a.c.p
	if len(p.Peers) == 0 {
		return
	}
	if len(a.fatal) > 0 {
		a.add("peers", false, "not forwarded: a peer cannot settle %s", strings.Join(a.fatal, ", "))
		return
	}
	depth := p.RedirectDepth
	if len(a.sub.Hops) > 0 {
		depth = min(max(a.sub.Depth, 0), depth)
	}
	if depth <= 0 {
		came := ""
		if len(a.sub.Hops) > 0 {
			came = " (it came through " + strings.Join(a.sub.Hops, ", ") + ")"
		}
		a.add("redirect_depth", false, "not forwarded: no redirect depth left%s", came)
		return
	}
	for _, peer := range p.Peers {
		if peer == a.node.Self || slices.Contains(a.sub.Hops, peer) {
			continue
		}
		a.d.Verdict = Forward
		a.d.Forward = &ForwardTo{Peer: peer, Depth: depth - 1}
		a.add("peers", true, "forward to %s: %s failed here; redirect depth %d → %d", peer, strings.Join(a.failed, ", "), depth, depth-1)
		return
	}
	a.add("peers", false, "not forwarded: every peer is this node or already on the service's path")
}

// trustString says what the counted attestations add up to: "2 trusted
// signers (hub-a, hub-b), weight 3", and when delegates counted, from how
// many hubs' trees: "3 trusted signers (hub-b, ed25519:ab…, ed25519:cd…)
// from 2 trusted hubs, weight 3".
func (a *admission) trustString() string {
	s := plural(len(a.signers), "trusted signer", "trusted signers")
	if len(a.signers) > 0 {
		s += " (" + strings.Join(a.signers, ", ") + ")"
	}
	if len(a.roots) != len(a.signers) {
		s += " from " + plural(len(a.roots), "trusted hub", "trusted hubs")
	}
	return s + ", weight " + formatFloat(a.weight)
}

// quorumString says what a quorum needs; its signatures are distinct
// trusted hubs, a hub's tree being one voice.
func quorumString(q Quorum) string {
	hubs := "trusted hubs"
	if q.Signatures == 1 {
		hubs = "trusted hub"
	}
	return plural(q.Signatures, "signature", "signatures") + " (" + hubs + "), weight " + formatFloat(q.Weight)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func originList(list []Origin) string {
	const show = 4
	var parts []string
	for i, o := range list {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(list)-show))
			break
		}
		parts = append(parts, o.Kind+":"+o.ID)
	}
	return strings.Join(parts, ", ")
}

func orNone(lang string) string {
	if lang == "" {
		return "no language"
	}
	return lang
}

// orNoneList joins list, "none" when it is empty.
func orNoneList(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// sizeString shows a byte count with a unit when one divides it evenly:
// "64Mi", "8388609 bytes".
func sizeString(n int64) string {
	if u := formatBytes(n); u != strconv.FormatInt(n, 10) {
		return u
	}
	return plural(int(n), "byte", "bytes")
}

// formatBytes writes n with the largest binary unit dividing it.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<40 && n%(1<<40) == 0:
		return fmt.Sprintf("%dTi", n>>40)
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGi", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMi", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKi", n>>10)
	}
	return strconv.FormatInt(n, 10)
}
