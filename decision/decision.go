// Package decision holds the data of an admission decision: the Decision a
// node reaches about a service (its Verdict, Limits, Reasons, where a
// forwarded service goes and what an upgrade grew), and the OriginClaim a
// submission carries, with the header form it travels in.
//
// It is a leaf that imports only the standard library, so that the API
// client and anything else that reads or writes decisions need not import
// the policy engine. The JSON tags are the wire format and the format of
// stored decisions; they do not change. How a decision is reached is
// package policy's business (policy.Compiled.Admit); this package holds no
// rules and does no I/O.
package decision

// Verdict is what the node does with a service.
type Verdict string

// The verdicts.
const (
	Run     Verdict = "run"     // run it here
	Forward Verdict = "forward" // send it to the peer Decision.Forward names
	Reject  Verdict = "reject"  // refuse it
)

// Decision is the outcome of admission. Its JSON is
//
//	{"verdict": …, "driver": …, "limits": {…}, "network": …, "reasons": [{"rule": …, "ok": …, "detail": …}, …]}
//
// followed by forward, dormant, container, container_fallback, registries
// and growth only when set. Driver, Limits and Network are what the service
// gets (or would get) here whatever the verdict, so that explain shows
// them.
type Decision struct {
	Verdict Verdict  `json:"verdict"`
	Driver  string   `json:"driver"`
	Limits  Limits   `json:"limits"`
	Network string   `json:"network"`
	Reasons []Reason `json:"reasons"`
	// Forward names the peer and the redirect depth the service carries
	// there; set when Verdict is Forward.
	Forward *ForwardTo `json:"forward,omitempty"`
	// Dormant: admitted, started only on the first trigger. Only with Run.
	Dormant bool `json:"dormant,omitempty"`
	// Container is the existing container a docker service is placed into
	// instead of a new one.
	Container string `json:"container,omitempty"`
	// Fallback is what happens when Container is not running at deploy
	// (policy.container_fallback): "new" runs the service in new
	// containers, "refuse" fails the deploy. Set only with Container.
	Fallback string `json:"container_fallback,omitempty"`
	// Registries are the package registries the service's dependencies
	// install from (its language's entry in policy.registries); empty: the
	// toolchain's default.
	Registries []string `json:"registries,omitempty"`
	// Growth is what an upgrade asks for beyond the admitted version.
	Growth []Growth `json:"growth,omitempty"`
}

// ForwardTo is where a forwarded service goes.
type ForwardTo struct {
	// Peer is the peer's base URL, as listed in policy.peers.
	Peer string `json:"peer"`
	// Depth is the redirect depth the service carries to the peer: this
	// node's remaining depth minus one.
	Depth int `json:"depth"`
}

// Reason is one rule's finding about a service. Rule names the policy
// setting that decided ("keywords", "limits.memory", "rules.no-weekend",
// "attestations[1]"), so an operator knows what to change.
type Reason struct {
	Rule   string `json:"rule"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Limits are the resource ceilings a deployment runs under.
type Limits struct {
	Memory      int64   `json:"memory_bytes"`
	CPU         float64 `json:"cpu"`
	TimeoutMS   int64   `json:"timeout_ms"`
	Pids        int     `json:"pids"`
	Concurrency int     `json:"concurrency"`
	// ActionsPerRun is the most actions one run may return: the
	// manifest's capabilities.caps.actions_per_run (default 256) within
	// the policy's ceiling. 0 in decisions made before it existed: the
	// manifest's cap alone holds.
	ActionsPerRun int `json:"actions_per_run,omitempty"`
}

// Growth is one way a new version of a service asks for more than the
// admitted one (see policy.Diff).
type Growth struct {
	// What grew: memory, cpu, timeout, pids, concurrency, network (one
	// entry per newly reachable endpoint, or any), action (one entry per
	// new action kind), actions_per_run, runs_per_minute,
	// actions_per_minute (To "none" when dropped), cap (one entry per param cap
	// raised or dropped: From "submit.amount ≤ 100", To "submit.amount ≤
	// 500" or "submit.amount uncapped"), target, state, driver (an isolation weaker than
	// before: wasm → docker → process) or trigger (one entry per new http
	// path, which exposes the service on the node's HTTP server).
	What string `json:"what"`
	// From is the admitted version's value; empty when it had none.
	From string `json:"from,omitempty"`
	// To is the new version's value.
	To string `json:"to"`
}

// String returns "memory 64Mi → 128Mi", "action submit", "network +api.x:443".
func (g Growth) String() string {
	switch {
	case g.What == "action" || g.What == "trigger":
		return g.What + " " + g.To
	case g.What == "network" && g.From == "":
		return "network +" + g.To
	case g.From == "":
		return g.What + " " + g.To
	}
	return g.What + " " + g.From + " → " + g.To
}
