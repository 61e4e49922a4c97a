// Package policy holds the operator's admission policy (the policy section
// of the node config) and turns a submitted service into a Decision: run it
// here (with which driver, limits, network, container and registries),
// forward it to a peer (naming the peer and the redirect depth left), or
// reject it, always with the reasons, in the order the rules looked at the
// service, whether they passed or failed.
//
// The lifecycle is Parse (strict: an unknown key is an error naming its
// path) → Validate (every problem, each with its path) → Compile (CEL rules
// compiled, trusted hub keys parsed, every lookup table built once) →
// Compiled.Admit, a pure, deterministic function of the Submission and the
// Node: it never runs service code, does no I/O and reads no clock (the
// decision time comes in Node.Now). A Compiled is immutable and safe for
// concurrent use; reloading a policy is compiling the new one and swapping
// the pointer only when Compile succeeded.
//
// The package also computes the permission diff of an upgrade (Diff), builds
// decision receipts for package attest to sign (NewReceipt), and imports the
// KLYNTAR runner configuration (ImportKlyntar).
//
// The decision's data types (Decision, Reason, Limits, Growth, OriginClaim)
// belong to package decision, a standard-library-only leaf that the API
// client imports instead of this package; the names here are aliases of
// them.
//
// It does not fetch sources (package source), verify anything but
// attestations and delegations (the trust tree, trust.go), store decisions, forward services to peers, or know how a
// driver enforces what it decides.
//
// # Rules
//
// policy.rules are CEL expressions (cel.dev/cel-go; for rules that name a
// service, see Admission plugins below) that must evaluate to a
// bool; a rule that is false rejects the service with the rule's message, a
// rule that fails to evaluate (a missing config key, an overflow) rejects it
// with the error. Field names are checked when the policy is compiled. The
// variables:
//
//	service                    the manifest, normalized
//	  .name .version .title .description .mode   string
//	  .keywords                list(string), lowercase
//	  .runtime                 .driver .language .entry .image string, .command list(string)
//	  .triggers                list of {kind, every (double, seconds; 0 if unset), schedule, topic, path}
//	  .resources               .memory int (bytes), .cpu double (cores), .timeout double (seconds),
//	                           .pids int, .concurrency int
//	  .capabilities            .network string ("none", "any" or "list"), .hosts list(string),
//	                           .actions list(string), .state bool
//	  .target                  string ("" when none)
//	  .source                  .location .git .commit .ref .path .host .digest string ("" when none;
//	                           host is the location's or the repository's)
//	  .reward                  .amount double, .unit string
//	  .config                  map(string, dyn): the manifest's config
//	submission
//	  .digest                  string: the canonical archive digest
//	  .payload                 int: archive bytes (0 when not fetched yet)
//	  .origin                  .kind .id string, .stake double
//	  .hops                    list(string): peers it came through
//	  .signers                 list(string): names of the signers whose attestations count: a
//	                           trusted hub by its name, a delegate by its short key
//	                           ("ed25519:AbCdEfGh…")
//	  .weight                  double: their total weight
//	  .upgrade                 bool: an admitted version exists
//	  .previous                string: that version ("" when none)
//	  .growth                  list(string): what grew, e.g. ["memory", "network", "action:submit"]
//	node
//	  .drivers                 map(string, bool): driver → enabled
//	  .services                int: services admitted on the node now
//	  .now                     timestamp: the decision time
//
// Numbers of different types compare (service.resources.timeout <= 30),
// timestamps have the standard CEL accessors (node.now.getDayOfWeek("UTC")),
// and the CEL strings extension is loaded (service.name.split("-")).
// Evaluation is capped at 100000 cost units per rule. Rules run after every
// other rule, so submission.signers and submission.growth are settled.
//
// # Admission plugins
//
// A rule may name a service instead of an expression:
//
//	rules:
//	  - {name: budget, service: admission-budget, digest: "sha256:…", timeout: 2s}
//
// The node consults that service, which must be the operator's and have
// exactly the pinned archive digest, for each submission the built-in rules
// would run (Preliminary), and passes its answer in Submission.Plugins;
// Admit folds it in at the rule's place: reject fails the rule with the
// plugin's reasons (a failure a peer may not share, so it may forward),
// run holds, and its limits narrow the decision's (a limit above what the
// built-in rules allow is clamped to it, with a reason saying so). A
// plugin that was not consulted, failed or answered badly
// (PluginAnswer.Failure, PluginAnswer.Check) fails the rule. The answer is
// ParsePluginAnswer's JSON: {"verdict": "run" | "reject", "reasons":
// [...], "limits": {"memory": "128Mi", "cpu": "0.5", "timeout": "2s",
// "pids": 16, "concurrency": 2}}.
//
// # Forwarding
//
// A service that fails a rule is forwarded rather than rejected when
// policy.peers lists a peer not already on its path (Submission.Hops) and
// redirect depth is left: failures of this node's own preferences and
// capabilities (keywords, limits, quorum, driver, rules, …) may pass on a
// peer. A digest that does not match source.digest, a target conflict and a
// refused upgrade always reject.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/manifest"
)

// Policy is the operator's admission policy: the policy section of the node
// config, in YAML, JSON or TOML. Field comments state defaults; DefaultPolicy
// returns them, and Parse overlays a file on them (a key the file leaves out
// keeps its default; a list or map in the file replaces the default).
type Policy struct {
	// MaxDescription is the longest description, in characters, this node
	// accepts (KLYNTAR: DESC_MAX_LEN). Default 4096, the manifest's own
	// bound; 0 admits only services without a description.
	MaxDescription int `json:"max_description" yaml:"max_description"`
	// MaxPayload is the largest archive, uploaded or fetched from
	// source.location, and the most bytes a source.git fetch downloads, in
	// bytes or with a unit (16Mi). Default 16Mi.
	MaxPayload manifest.Bytes `json:"max_payload" yaml:"max_payload"`
	// MaxVolumeSize is the most all of a service's volumes may hold
	// together (the sum of their sizes), in bytes or with a unit (1Gi); a
	// service asking for more is rejected. 0 admits no volumes. Default
	// 256Mi.
	MaxVolumeSize manifest.Bytes `json:"max_volume_size" yaml:"max_volume_size"`
	// AllowedSources are the hosts a source.location or source.git may
	// name (KLYNTAR: ALLOWED_STORAGE): "github.com" (that host, port 443),
	// "*.githubusercontent.com" (any name below it), "host:8443". Default
	// empty: no service may name a source.
	AllowedSources []string `json:"allowed_sources,omitempty" yaml:"allowed_sources"`
	// TrustedHubs are the signers whose attestations count (KLYNTAR:
	// TRUSTED_HUBS). Default none.
	TrustedHubs []Hub `json:"trusted_hubs,omitempty" yaml:"trusted_hubs"`
	// Require is the quorum a service's counted attestations must reach.
	// Default {signatures: 0, weight: 0}: attestations are reported but not
	// required.
	Require Quorum `json:"require" yaml:"require"`
	// Trust governs delegations: how far below the trusted hubs (the
	// roots) attestations count; see TrustPolicy. Default {max_depth: 2}.
	Trust TrustPolicy `json:"trust" yaml:"trust"`
	// PreferDrivers maps a driver (wasm, process, docker) to the languages
	// this node prefers to run there (KLYNTAR: PREFER_TOOLCHAIN). When a
	// service accepts several drivers, the first available one preferring
	// its language is chosen. A preference, not a restriction. Default
	// none.
	PreferDrivers map[string][]string `json:"prefer_drivers,omitempty" yaml:"prefer_drivers"`
	// Keywords are the keywords this node accepts (KLYNTAR: KEYWORDS): a
	// service must carry at least one of them. Default empty: any service,
	// with or without keywords.
	Keywords []string `json:"keywords,omitempty" yaml:"keywords"`
	// Network is the most network a service may be granted (KLYNTAR:
	// NETCAP): none, any, or a list of host:port patterns (see Network). A
	// service asking for more is rejected. Default any.
	Network Network `json:"network" yaml:"network"`
	// Limits are the resource ceilings, each with what to do with a request
	// above it. Defaults: memory 512Mi, cpu 2, timeout 60s, pids 256,
	// concurrency 16, actions_per_run 256, all clamped.
	Limits Ceilings `json:"limits" yaml:"limits"`
	// MinReward is the least reward a service must offer. Default amount 0:
	// no minimum.
	MinReward Reward `json:"min_reward" yaml:"min_reward"`
	// Origins are the origins this node prefers, or the only ones it
	// admits, each with a minimum stake (KLYNTAR: PREFER_SYMBIOTES,
	// PREFER_HOSTCHAINS, MIN_FREEZE): a bare list is an allowlist, the
	// mapping {required, prefer, min_stake} a preference; see Origins.
	// Default none: any origin, or none, none preferred.
	Origins Origins `json:"origins,omitzero" yaml:"origins,omitempty"`
	// Containers are existing containers a docker service may be placed
	// into instead of a new one (KLYNTAR: CONTAINERS). Default none.
	Containers []Container `json:"containers,omitempty" yaml:"containers"`
	// ContainerFallback is what happens when the container a docker
	// service was placed into (containers) is not running when the
	// service deploys: new runs it in new containers of its own, with the
	// reason on its placement; refuse fails the deploy. Default new.
	ContainerFallback string `json:"container_fallback" yaml:"container_fallback"`
	// Registries maps a language (node, python, rust, …) to the package
	// registries its dependencies install from, and "docker" to where
	// docker images may come from (KLYNTAR: REGISTRIES). A language not
	// listed, or listed with no registry, uses its toolchain's default.
	// The docker entries are image reference prefixes (ghcr.io/org/ admits
	// ghcr.io/org/app@sha256:…; a prefix without a trailing slash matches
	// whole path parts) or registry URLs (https://ghcr.io admits every
	// image of that registry); a docker image that none of them matches is
	// rejected when "docker" lists any, and the node's docker driver pulls
	// from these prefixes only. Default none.
	Registries map[string][]string `json:"registries,omitempty" yaml:"registries"`
	// Images governs docker image references; see ImagePolicy.
	Images ImagePolicy `json:"images" yaml:"images"`
	// Peers are the nodes (http or https base URLs) this node forwards what
	// it will not or cannot run to, in order of preference (KLYNTAR:
	// STATIC_NODES). Default none: such services are rejected.
	Peers []string `json:"peers,omitempty" yaml:"peers"`
	// RedirectDepth is how many hops a service may travel from the node it
	// was submitted to (KLYNTAR: REDIRECTION_DEPTH), 0 to 16. Default 3.
	RedirectDepth int `json:"redirect_depth" yaml:"redirect_depth"`
	// Advertise offers services admitted here to peers (the seed's
	// "distribute and advertise the service further"): each peer judges
	// the service by its own policy and may run it too. Default none (no
	// services listed).
	Advertise Advertise `json:"advertise,omitzero" yaml:"advertise,omitempty"`
	// Dormant selects services admitted but not started until first
	// triggered (KLYNTAR: DORMITORY). Default none.
	Dormant Dormant `json:"dormant" yaml:"dormant"`
	// Upgrade says what happens when a new version of an admitted service
	// asks for more than the running one. Default growth allow.
	Upgrade Upgrade `json:"upgrade" yaml:"upgrade"`
	// SharedTargets are targets several services may operate; any other
	// target belongs to the first service admitted with it (docs/design.md
	// section 8). Default none.
	SharedTargets []string `json:"shared_targets,omitempty" yaml:"shared_targets"`
	// Rules are extra conditions: CEL expressions, or admission plugins
	// (services the node consults); the values a rule sees are listed
	// in the policy package's documentation (go doc
	// github.com/andromeda-runner/andromeda/policy). Default none.
	Rules []Rule `json:"rules,omitempty" yaml:"rules"`
}

// Hub is a trusted signer.
type Hub struct {
	// Name identifies the hub in reasons: [a-z0-9][a-z0-9._-]{0,62},
	// unique. Required.
	Name string `json:"name" yaml:"name"`
	// Key is its ed25519 public key, "ed25519:<base64>" (see package
	// attest). Required, unique.
	Key string `json:"key" yaml:"key"`
	// Weight is what its signature adds to an attestation's weight, more
	// than 0. Default 1.
	Weight float64 `json:"weight" yaml:"weight"`
}

// Quorum is how much trusted attestation a service needs: at least
// Signatures distinct trusted hubs, counting each hub's tree once, whose
// counted attestations' weights add up to at least Weight.
type Quorum struct {
	// Signatures is the least number of distinct trusted hubs whose tree
	// (the hub or a delegate below it) has a counted attestation, ≥ 0 and
	// at most the number of hubs.
	Signatures int `json:"signatures" yaml:"signatures"`
	// Weight is the least total weight, ≥ 0.
	Weight float64 `json:"weight" yaml:"weight"`
}

// IsZero reports whether q requires nothing.
func (q Quorum) IsZero() bool { return q.Signatures == 0 && q.Weight == 0 }

// Over is what to do with a resource request above its ceiling.
type Over string

// The choices for a ceiling. The default is OverClamp.
const (
	OverClamp  Over = "clamp"  // grant the ceiling instead
	OverReject Over = "reject" // reject the service
)

// Ceiling is the most of one resource a service may get, and what happens
// to a request above it.
type Ceiling[T any] struct {
	// Max is the ceiling, more than 0; required when the limit is given
	// as an object (the defaults are each limit's).
	Max T `json:"max" yaml:"max"`
	// Over is what happens to a request above the ceiling: clamp it to
	// the ceiling (the default) or reject the service.
	Over Over `json:"over" yaml:"over"`
}

// Ceilings are the resource ceilings of the node.
type Ceilings struct {
	// Memory: a size, 1Mi to 1Ti. Default 512Mi.
	Memory Ceiling[manifest.Bytes] `json:"memory" yaml:"memory"`
	// CPU: cores (0.5) or millicores (500m), more than 0, at most 1024.
	// Default 2.
	CPU Ceiling[manifest.CPU] `json:"cpu" yaml:"cpu"`
	// Timeout: a duration, 1ms to 24h. Default 60s.
	Timeout Ceiling[manifest.Duration] `json:"timeout" yaml:"timeout"`
	// Pids: 1 to 1048576. Default 256.
	Pids Ceiling[int] `json:"pids" yaml:"pids"`
	// Concurrency: 1 to 4096. Default 16.
	Concurrency Ceiling[int] `json:"concurrency" yaml:"concurrency"`
	// ActionsPerRun: the most actions one run may return, 1 to 256 (the
	// contract's limit); a service's capabilities.caps.actions_per_run,
	// or 256 when it sets none, is held to it. Default 256.
	ActionsPerRun Ceiling[int] `json:"actions_per_run" yaml:"actions_per_run"`
	// Services is the most services admitted on the node at once, 0 to
	// 1048576; 0 (the default) is no limit. A new service over it waits
	// in the node's admission queue (preferred origins first) until a
	// service is removed; an upgrade of an admitted service never waits,
	// and nothing admitted is evicted.
	Services int `json:"services,omitempty" yaml:"services,omitempty"`
}

// Reward is the least a service must offer.
type Reward struct {
	// Amount is ≥ 0; 0 means no minimum.
	Amount float64 `json:"amount" yaml:"amount"`
	// Unit is [A-Za-z0-9]{1,16}, compared exactly with the manifest's
	// reward.unit; required when Amount > 0.
	Unit string `json:"unit" yaml:"unit"`
}

// Origin is where a submission may come from: a chain, network or tenant
// the operator serves, and the stake its submitter must have there.
type Origin struct {
	// Kind is the kind of origin, [a-z0-9-]{1,32}: symbiote and hostchain
	// for KLYNTAR, anything the operator uses otherwise. Required.
	Kind string `json:"kind" yaml:"kind"`
	// ID identifies the origin within its kind (a symbiote's id, a chain's
	// ticker), 1 to 128 printable characters without spaces; compared
	// exactly. Required.
	ID string `json:"id" yaml:"id"`
	// MinStake is the least stake (KLYNTAR: MIN_FREEZE) the submission must
	// carry, ≥ 0. Default 0.
	MinStake float64 `json:"min_stake" yaml:"min_stake"`
}

// Container is an existing container docker services may be placed into.
type Container struct {
	// Name is the container's name on the Docker engine. Required, unique.
	Name string `json:"name" yaml:"name"`
	// Languages are the service languages it can host; empty: any.
	Languages []string `json:"languages,omitempty" yaml:"languages"`
}

// The values of Policy.ContainerFallback.
const (
	FallbackNew    = "new"
	FallbackRefuse = "refuse"
)

// ImagePolicy governs the image references of docker services.
type ImagePolicy struct {
	// AllowTags admits an image named by tag (app:1.2, app). Default
	// false: runtime.image must be pinned, REF@sha256:<64 hex> (a registry
	// digest) or an image ID sha256:<64 hex>, so that what was admitted is
	// what runs, whatever a tag points at later.
	AllowTags bool `json:"allow_tags" yaml:"allow_tags"`
}

// Dormant selects services that are admitted but started only when first
// triggered.
type Dormant struct {
	// All makes every admitted service dormant. Default false.
	All bool `json:"all" yaml:"all"`
	// Services are service names; a name ending in "*" matches every name
	// with that prefix.
	Services []string `json:"services,omitempty" yaml:"services"`
	// Keywords make a service carrying any of them dormant.
	Keywords []string `json:"keywords,omitempty" yaml:"keywords"`
}

// GrowthRule is what an upgrade that asks for more than the running
// version needs.
type GrowthRule string

// The growth rules. The default is GrowthAllow.
const (
	// GrowthAllow admits the growth; the decision still lists it.
	GrowthAllow GrowthRule = "allow"
	// GrowthAttest admits it only when the new version's attestations reach
	// Upgrade.Require (attestations are always over the new digest, so
	// they are fresh).
	GrowthAttest GrowthRule = "attest"
	// GrowthReject rejects any growth: remove the service first.
	GrowthReject GrowthRule = "reject"
)

// Upgrade is the policy for new versions of admitted services.
type Upgrade struct {
	// Growth is what a new version asking for more than the admitted one
	// gets (a growth): allow (the default), attest or reject.
	Growth GrowthRule `json:"growth" yaml:"growth"`
	// Require is the quorum growth needs under attest. Default
	// {signatures: 1, weight: 0}.
	Require Quorum `json:"require" yaml:"require"`
}

// Rule is a custom admission condition: a CEL expression (Expr), or an
// admission plugin (Service and Digest), never both.
type Rule struct {
	// Name identifies the rule in reasons (rules.NAME):
	// [a-z0-9][a-z0-9-]{0,62}, unique. Required.
	Name string `json:"name" yaml:"name"`
	// Expr is a CEL expression of type bool over the values the policy
	// package's documentation lists. Required unless Service is set.
	Expr string `json:"expr" yaml:"expr"`
	// Message is the reason given when Expr is false, or when the plugin
	// rejects without a reason. Default "rule NAME does not hold".
	Message string `json:"message,omitempty" yaml:"message,omitempty"`
	// Service names an admission plugin: a service of the operator's
	// that the node consults for each submission (see the package
	// documentation). Optional; with it, Digest is required.
	Service string `json:"service,omitempty" yaml:"service,omitempty"`
	// Digest pins the plugin service's archive digest, sha256:<64 hex>:
	// a plugin service with another digest is not consulted and the rule
	// fails. Required with Service.
	Digest string `json:"digest,omitempty" yaml:"digest,omitempty"`
	// Timeout bounds one consultation of the plugin, 1ms to 30s. Default
	// 2s; only with Service.
	Timeout manifest.Duration `json:"timeout,omitzero" yaml:"timeout,omitempty"`
}

// Defaults of DefaultPolicy.
const (
	DefaultMaxDescription = 4096
	DefaultMaxPayload     = "16Mi"
	DefaultMaxVolumeSize  = "256Mi"
	DefaultRedirectDepth  = 3
	DefaultMemory         = "512Mi"
	DefaultCPU            = "2"
	DefaultTimeout        = "60s"
	DefaultPids           = 256
	DefaultConcurrency    = 16
	DefaultActionsPerRun  = contract.MaxActions
)

// DefaultPolicy returns the policy of a node whose config has no policy
// section: any service within the ceilings runs, no attestation required,
// network any, no source.location, no peers.
func DefaultPolicy() Policy {
	mustBytes := func(s string) manifest.Bytes { b, _ := manifest.ParseBytes(s); return b }
	cpu, _ := manifest.ParseCPU(DefaultCPU)
	timeout, _ := manifest.ParseDuration(DefaultTimeout)
	return Policy{
		MaxDescription: DefaultMaxDescription,
		MaxPayload:     mustBytes(DefaultMaxPayload),
		MaxVolumeSize:  mustBytes(DefaultMaxVolumeSize),
		Network:        Network{Any: true},
		Limits: Ceilings{
			Memory:      Ceiling[manifest.Bytes]{Max: mustBytes(DefaultMemory), Over: OverClamp},
			CPU:         Ceiling[manifest.CPU]{Max: cpu, Over: OverClamp},
			Timeout:     Ceiling[manifest.Duration]{Max: timeout, Over: OverClamp},
			Pids:        Ceiling[int]{Max: DefaultPids, Over: OverClamp},
			Concurrency: Ceiling[int]{Max: DefaultConcurrency, Over: OverClamp},
			// The contract's own limit: no service can ask for more.
			ActionsPerRun: Ceiling[int]{Max: DefaultActionsPerRun, Over: OverClamp},
		},
		RedirectDepth:     DefaultRedirectDepth,
		Trust:             TrustPolicy{MaxDepth: DefaultTrustDepth},
		Upgrade:           Upgrade{Growth: GrowthAllow, Require: Quorum{Signatures: 1}},
		ContainerFallback: FallbackNew,
	}
}

// Normalize fills the defaults of list elements and empty choices (a hub's
// weight 1, a ceiling's over clamp, upgrade growth allow) and lowercases
// keywords and languages. Parse and Compile call it.
func (p *Policy) Normalize() {
	for i := range p.TrustedHubs {
		if p.TrustedHubs[i].Weight == 0 {
			p.TrustedHubs[i].Weight = 1
		}
	}
	for _, o := range []*Over{&p.Limits.Memory.Over, &p.Limits.CPU.Over, &p.Limits.Timeout.Over, &p.Limits.Pids.Over, &p.Limits.Concurrency.Over, &p.Limits.ActionsPerRun.Over} {
		if *o == "" {
			*o = OverClamp
		}
	}
	if p.Upgrade.Growth == "" {
		p.Upgrade.Growth = GrowthAllow
	}
	if p.ContainerFallback == "" {
		p.ContainerFallback = FallbackNew
	}
	for i := range p.Rules {
		if p.Rules[i].Service != "" && p.Rules[i].Timeout.IsZero() {
			p.Rules[i].Timeout, _ = manifest.ParseDuration(DefaultPluginTimeout.String())
		}
	}
	// Empty lists and maps are nil, so that "keywords: []" and no
	// keywords are the same policy.
	nilIfEmpty(&p.AllowedSources)
	nilIfEmpty(&p.TrustedHubs)
	nilIfEmpty(&p.Keywords)
	nilIfEmpty(&p.Network.Hosts)
	nilIfEmpty(&p.Origins.Prefer)
	nilIfEmpty(&p.Containers)
	nilIfEmpty(&p.Peers)
	nilIfEmpty(&p.Dormant.Services)
	nilIfEmpty(&p.Dormant.Keywords)
	nilIfEmpty(&p.SharedTargets)
	nilIfEmpty(&p.Rules)
	if len(p.PreferDrivers) == 0 {
		p.PreferDrivers = nil
	}
	if len(p.Registries) == 0 {
		p.Registries = nil
	}
	for i := range p.Containers {
		nilIfEmpty(&p.Containers[i].Languages)
	}
	lower(p.Keywords)
	lower(p.Dormant.Keywords)
	for _, langs := range p.PreferDrivers {
		lower(langs)
	}
	for i := range p.Containers {
		lower(p.Containers[i].Languages)
	}
}

// Digest returns "sha256:" and the hex sha256 of the policy's canonical
// JSON: json.Marshal of the normalized policy (fields in declaration order,
// map keys sorted, empty lists left out, values with units as written). A
// decision receipt names the policy by it.
func (p Policy) Digest() string {
	p = p.clone()
	p.Normalize()
	data, err := json.Marshal(p)
	if err != nil {
		panic("policy: digest: " + err.Error()) // plain data only
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// clone copies p deeply enough that Normalize on the copy leaves p alone.
func (p Policy) clone() Policy {
	c := p
	c.AllowedSources = slices.Clone(p.AllowedSources)
	c.TrustedHubs = slices.Clone(p.TrustedHubs)
	c.PreferDrivers = cloneLists(p.PreferDrivers)
	c.Keywords = slices.Clone(p.Keywords)
	c.Network.Hosts = slices.Clone(p.Network.Hosts)
	c.Origins.Prefer = slices.Clone(p.Origins.Prefer)
	c.Containers = slices.Clone(p.Containers)
	for i := range c.Containers {
		c.Containers[i].Languages = slices.Clone(c.Containers[i].Languages)
	}
	c.Registries = cloneLists(p.Registries)
	c.Peers = slices.Clone(p.Peers)
	c.Advertise.Services, c.Advertise.To = slices.Clone(p.Advertise.Services), slices.Clone(p.Advertise.To)
	c.Dormant.Services = slices.Clone(p.Dormant.Services)
	c.Dormant.Keywords = slices.Clone(p.Dormant.Keywords)
	c.SharedTargets = slices.Clone(p.SharedTargets)
	c.Rules = slices.Clone(p.Rules)
	return c
}

func cloneLists(m map[string][]string) map[string][]string {
	if m == nil {
		return nil
	}
	c := make(map[string][]string, len(m))
	for k, v := range m {
		c[k] = slices.Clone(v)
	}
	return c
}

func nilIfEmpty[T any](s *[]T) {
	if len(*s) == 0 {
		*s = nil
	}
}

func lower(list []string) {
	for i, s := range list {
		list[i] = strings.ToLower(s)
	}
}

// Advertise says which admitted services a node offers to which peers,
// and how far.
type Advertise struct {
	// Services are the services advertised once admitted here: names, a
	// name ending in * for a prefix, or * for all. Required.
	Services []string `json:"services" yaml:"services"`
	// To are the peers (base URLs) advertised to. Default: peers.
	To []string `json:"to,omitempty" yaml:"to"`
	// Hops is how many nodes an advertisement travels from the node that
	// admitted the service first, 1 to 16: 1 (the default), its own
	// peers only; more lets each peer that admits it advertise it on,
	// by its own policy, one hop fewer.
	Hops int `json:"hops,omitempty" yaml:"hops"`
}

// Advertises reports whether the policy advertises service name, to
// which peers and how many hops.
func (c *Compiled) Advertises(name string) (to []string, hops int, ok bool) {
	a := c.p.Advertise
	for _, pat := range a.Services {
		if prefix, cut := strings.CutSuffix(pat, "*"); cut && strings.HasPrefix(name, prefix) || pat == name {
			to = a.To
			if len(to) == 0 {
				to = c.p.Peers
			}
			return slices.Clone(to), max(a.Hops, 1), true
		}
	}
	return nil, 0, false
}
