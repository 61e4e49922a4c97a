package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
)

// OfferConfig is the operator's part of the node's offer (GET /v1/offer),
// the node config's offer section.
type OfferConfig struct {
	// Properties are added to the offer as they are: keys of
	// [A-Za-z0-9_.-]{1,128} (dotted, as Golem's golem.inf.cpu.cores), not
	// starting with "andromeda." (the node's own), at most 64; values any
	// JSON. They win over a runtime's property of the same key. Default
	// none.
	Properties map[string]any `json:"properties,omitempty" yaml:"properties"`
	// Prices are what a unit of each usage counter costs, in Currency:
	// "run" (per run), "wall_seconds", "cpu_seconds", "memory_gib_seconds"
	// or a service's own counter ([a-z0-9_.-]{1,64}); finite, ≥ 0, at most
	// 64. Default none.
	Prices map[string]float64 `json:"prices,omitempty" yaml:"prices"`
	// Currency is the unit of Prices ([A-Za-z0-9]{1,16}); required with
	// Prices.
	Currency string `json:"currency,omitempty" yaml:"currency"`
}

// The offer's own property names start with reservedPrefix.
const reservedPrefix = "andromeda."

var (
	propertyKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	priceKeyRE    = regexp.MustCompile(`^[a-z0-9_.-]{1,64}$`)
	currencyRE    = regexp.MustCompile(`^[A-Za-z0-9]{1,16}$`)
)

// Validate checks every key and value, naming each problem's path
// (offer.prices.cpu_seconds: must be ...).
func (c OfferConfig) Validate() error {
	var errs []error
	bad := func(path, rule string) { errs = append(errs, fmt.Errorf("%s: %s", path, rule)) }
	if len(c.Properties) > 64 {
		bad("offer.properties", fmt.Sprintf("at most 64 properties, got %d", len(c.Properties)))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Properties)) {
		switch {
		case !propertyKeyRE.MatchString(k):
			bad("offer.properties."+k, "the key must match [A-Za-z0-9_.-]{1,128}")
		case strings.HasPrefix(k, reservedPrefix):
			bad("offer.properties."+k, "keys starting with "+reservedPrefix+" are the node's own")
		}
	}
	if len(c.Prices) > 64 {
		bad("offer.prices", fmt.Sprintf("at most 64 prices, got %d", len(c.Prices)))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Prices)) {
		v := c.Prices[k]
		switch {
		case !priceKeyRE.MatchString(k):
			bad("offer.prices."+k, "the key must be a usage counter, [a-z0-9_.-]{1,64}")
		case math.IsNaN(v) || math.IsInf(v, 0) || v < 0:
			bad("offer.prices."+k, "must be a finite number ≥ 0")
		}
	}
	switch {
	case len(c.Prices) > 0 && c.Currency == "":
		bad("offer.currency", "required with offer.prices")
	case c.Currency != "" && !currencyRE.MatchString(c.Currency):
		bad("offer.currency", "must match [A-Za-z0-9]{1,16}")
	}
	return errors.Join(errs...)
}

// Offer is the node's offer: GET /v1/offer, andromeda offer.
func (n *Node) Offer(ctx context.Context) (api.Offer, error) {
	o := api.Offer{Node: n.cfg.Name, Properties: map[string]any{}, Prices: n.cfg.Offer.Prices, Currency: n.cfg.Offer.Currency}
	props := o.Properties
	props["andromeda.node.name"] = n.cfg.Name
	props["andromeda.node.version"] = Version
	props["andromeda.node.key"] = n.key.Public().String()
	var drivers []string
	n.waitDrivers(ctx) // the offer is of tested drivers
	for _, name := range slices.Sorted(maps.Keys(n.drivers)) {
		ds := n.drivers[name]
		on, why := ds.status()
		off := ds.driver.Offer()
		od := api.OfferDriver{Name: name, Enabled: on, Reason: why, Languages: off.Languages, Notes: off.Notes}
		for _, m := range off.Modes {
			od.Modes = append(od.Modes, string(m))
		}
		for _, layer := range slices.Sorted(maps.Keys(off.Isolation)) {
			if off.Isolation[layer] {
				od.Isolation = append(od.Isolation, layer)
			} else {
				od.Missing = append(od.Missing, layer)
			}
		}
		o.Drivers = append(o.Drivers, od)
		if !on {
			continue
		}
		drivers = append(drivers, name)
		p := reservedPrefix + "driver." + name + "."
		props[p+"modes"] = od.Modes
		props[p+"isolation"] = od.Isolation
		if len(od.Languages) > 0 {
			props[p+"languages"] = od.Languages
		}
	}
	props["andromeda.drivers"] = drivers
	pol := n.Policy().Policy()
	lim := pol.Limits
	props["andromeda.limits.memory_bytes"] = lim.Memory.Max.Int64()
	props["andromeda.limits.cpu_cores"] = lim.CPU.Max.Cores()
	props["andromeda.limits.timeout_ms"] = lim.Timeout.Max.Std().Milliseconds()
	props["andromeda.limits.pids"] = lim.Pids.Max
	props["andromeda.limits.concurrency"] = lim.Concurrency.Max
	props["andromeda.limits.actions_per_run"] = lim.ActionsPerRun.Max
	o.Constraints = constraints(pol)

	// What the runtimes inject, then the operator's properties, which win.
	o.Runtimes = n.runtimeOffers()
	for _, r := range o.Runtimes {
		for _, k := range slices.Sorted(maps.Keys(r.Properties)) {
			switch {
			case n.cfg.Offer.Properties[k] != nil:
				o.Notes = append(o.Notes, fmt.Sprintf("runtime %s's property %s is dropped: the operator's offer.properties sets it", r.Name, k))
			case props[k] != nil:
				o.Notes = append(o.Notes, fmt.Sprintf("runtime %s's property %s is dropped: another runtime set it first", r.Name, k))
			default:
				props[k] = r.Properties[k]
			}
		}
	}
	maps.Copy(props, n.cfg.Offer.Properties)
	return o, nil
}

// constraints writes what the policy demands of a service in the offer
// language of Golem's market: an LDAP-like filter, "" when it demands
// nothing. Limits that clamp are not constraints (a bigger request is
// granted the ceiling); limits that reject are.
func constraints(pol policy.Policy) string {
	var cs []string
	lim := pol.Limits
	if lim.Memory.Over == policy.OverReject {
		cs = append(cs, fmt.Sprintf("(service.resources.memory<=%d)", lim.Memory.Max.Int64()))
	}
	if lim.CPU.Over == policy.OverReject {
		cs = append(cs, fmt.Sprintf("(service.resources.cpu<=%g)", lim.CPU.Max.Cores()))
	}
	if lim.Timeout.Over == policy.OverReject {
		cs = append(cs, fmt.Sprintf("(service.resources.timeout_ms<=%d)", lim.Timeout.Max.Std().Milliseconds()))
	}
	if lim.Pids.Over == policy.OverReject {
		cs = append(cs, fmt.Sprintf("(service.resources.pids<=%d)", lim.Pids.Max))
	}
	if lim.Concurrency.Over == policy.OverReject {
		cs = append(cs, fmt.Sprintf("(service.resources.concurrency<=%d)", lim.Concurrency.Max))
	}
	if len(pol.Keywords) > 0 {
		var ks []string
		for _, k := range pol.Keywords {
			ks = append(ks, "(service.keywords="+k+")")
		}
		cs = append(cs, "(|"+strings.Join(ks, "")+")")
	}
	if pol.MinReward.Amount > 0 {
		cs = append(cs, fmt.Sprintf("(service.reward.amount>=%g)(service.reward.unit=%s)", pol.MinReward.Amount, pol.MinReward.Unit))
	}
	if !pol.Require.IsZero() {
		cs = append(cs, fmt.Sprintf("(service.attestations.signatures>=%d)(service.attestations.weight>=%g)", pol.Require.Signatures, pol.Require.Weight))
	}
	if len(cs) == 0 {
		return ""
	}
	return "(&" + strings.Join(cs, "") + ")"
}

// SelfTest runs every driver's self-test and certifies every registered
// runtime again, now (POST /v1/selftest, andromeda selftest; the seed:
// "must allow execution at any time"). A driver or runtime that fails is
// disabled with the reason; one that passes is enabled again. Services
// already deployed keep running either way: a disabled driver or runtime
// takes no new deployments. names, when given, are the only drivers and
// runtimes tested; an unknown one is ErrInvalid.
func (n *Node) SelfTest(ctx context.Context, names ...string) (api.SelfTest, error) {
	out := api.SelfTest{Drivers: []api.SelfTestResult{}}
	known := slices.Collect(maps.Keys(n.drivers))
	for _, st := range n.runtimes {
		known = append(known, st.desc.Name)
	}
	for _, name := range names {
		if !slices.Contains(known, name) {
			return out, server.Errorf(server.ErrInvalid, "selftest: %q is neither a driver nor a runtime of this node (%s)", name, strings.Join(slices.Sorted(slices.Values(known)), ", "))
		}
	}
	chosen := func(name string) bool { return len(names) == 0 || slices.Contains(names, name) }
	for _, name := range slices.Sorted(maps.Keys(n.drivers)) {
		if !chosen(name) {
			continue
		}
		ds := n.drivers[name]
		if err := ds.wait(ctx); err != nil { // the test at start first
			return out, err
		}
		start := time.Now()
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := safeTest(tctx, ds.driver)
		cancel()
		r := api.SelfTestResult{Name: name, OK: err == nil, TookMS: ms(time.Since(start))}
		ds.mu.Lock()
		ds.enabled, ds.reason = err == nil, ""
		if err != nil {
			ds.reason = err.Error()
			r.Reason = ds.reason
		}
		r.Enabled = ds.enabled
		ds.mu.Unlock()
		if err != nil {
			n.log.Warn("selftest: driver disabled", "driver", name, logErr, err)
		} else {
			n.log.Info("selftest: driver ready", "driver", name)
		}
		out.Drivers = append(out.Drivers, r)
	}
	for _, st := range n.runtimes {
		if !chosen(st.desc.Name) {
			continue
		}
		st.mu.Lock()
		refused := st.status == runtimeRefused
		st.mu.Unlock()
		if !refused {
			n.certify(ctx, st)
		}
		st.mu.Lock()
		out.Runtimes = append(out.Runtimes, api.SelfTestResult{
			Name: st.desc.Name, OK: st.status == runtimeEnabled, Reason: st.reason,
			TookMS: ms(st.took), Enabled: st.status == runtimeEnabled,
		})
		st.mu.Unlock()
	}
	return out, nil
}

// safeTest is d.Test with a panic turned into an error.
func safeTest(ctx context.Context, d sandbox.Driver) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("driver %s panicked in its self-test: %v", d.Name(), p)
		}
	}()
	return d.Test(ctx)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// deployTest runs a new deployment's self-test, if it has one: the deploy
// fails with the test's message when it fails. ran is false when the
// service has no test.
func (n *Node) deployTest(ctx context.Context, name string, dep sandbox.Deployment) (ran bool, err error) {
	ran, err = runTest(ctx, dep)
	if err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = dep.Stop(sctx)
		return ran, fmt.Errorf("self-test failed: %w", err)
	}
	if ran {
		n.log.Info("service self-test passed", logService, name)
	}
	return ran, nil
}

// runTest runs dep's self-test if its driver can, with a panic turned into
// a failure.
func runTest(ctx context.Context, dep sandbox.Deployment) (ran bool, err error) {
	t, ok := dep.(sandbox.Tester)
	if !ok {
		return false, nil
	}
	defer func() {
		if p := recover(); p != nil {
			ran, err = true, fmt.Errorf("the driver panicked in the self-test: %v", p)
		}
	}()
	return t.Test(ctx)
}

// TestService runs a deployed service's self-test now: POST
// /v1/services/{name}/test, andromeda test NAME. A test that fails is an
// answer, not an error; a service that is not deployed is 409.
func (n *Node) TestService(ctx context.Context, name string) (api.ServiceTest, error) {
	d, err := n.deployedFor(ctx, name, nil)
	if err != nil {
		return api.ServiceTest{}, err
	}
	dep, err := n.ensureDeployed(ctx, d)
	if err != nil {
		return api.ServiceTest{}, server.Errorf(server.ErrConflict, "service %s cannot be deployed: %v", name, err)
	}
	start := time.Now()
	ran, err := runTest(ctx, dep)
	out := api.ServiceTest{Service: name, Ran: ran, OK: err == nil, TookMS: ms(time.Since(start))}
	if err != nil {
		out.Error = err.Error()
		n.log.Warn("service self-test failed", logService, name, logErr, err)
	}
	return out, nil
}

// Runtimes implements server.OfferBackend: the runner API's listRuntimes,
// every place a service or a flow's module can run. Each language a
// driver offers is one runtime (driver/language; the wasm driver is one,
// "wasm"); each registered runtime is one per language it serves, or one
// with its reason when its descriptor was refused. A disabled driver's
// languages are listed with its reason.
func (n *Node) Runtimes(ctx context.Context) ([]api.Runtime, error) {
	n.waitDrivers(ctx)
	registered := map[string]bool{}
	for _, st := range n.runtimes {
		st.mu.Lock()
		if st.status != runtimeRefused {
			for _, l := range st.desc.languages() {
				registered[l] = true
			}
		}
		st.mu.Unlock()
	}
	var out []api.Runtime
	processOn, processWhy := false, "the process driver is not on this node"
	for _, name := range slices.Sorted(maps.Keys(n.drivers)) {
		ds := n.drivers[name]
		on, why := ds.status()
		off := ds.driver.Offer()
		if name == "process" {
			processOn, processWhy = on, why
		}
		if name == "wasm" {
			out = append(out, api.Runtime{ID: "wasm", Name: "WebAssembly", Version: off.Languages["wasm"], Driver: name,
				Language: "wasm", Kind: api.RuntimeDriver, Enabled: on, Reason: why})
			continue
		}
		for _, lang := range slices.Sorted(maps.Keys(off.Languages)) {
			if name == "process" && registered[lang] {
				continue // listed below, as its runtime
			}
			out = append(out, api.Runtime{ID: name + "/" + lang, Name: languageName(name, lang), Version: off.Languages[lang],
				Driver: name, Language: lang, Kind: api.RuntimeDriver, Enabled: on, Reason: why})
		}
	}
	for _, st := range n.runtimes {
		st.mu.Lock()
		r := api.Runtime{Name: st.desc.Name, Version: st.desc.Version, Driver: "process", Kind: api.RuntimeRegistered,
			Enabled: st.status == runtimeEnabled && processOn, Reason: st.reason}
		if st.status == runtimeEnabled && !processOn {
			r.Reason = processWhy
		}
		if st.status == runtimeRefused {
			r.ID = "process/" + st.desc.Name
			out = append(out, r)
		} else {
			for _, l := range st.desc.languages() {
				r.ID, r.Language = "process/"+l, l
				out = append(out, r)
			}
		}
		st.mu.Unlock()
	}
	return append(out, n.browserRuntimes()...), nil
}

// languageName names a driver's language for people.
func languageName(driver, lang string) string {
	name := map[string]string{"node": "Node.js", "python": "Python", "exec": "executable", "image": "container image"}[lang]
	if name == "" {
		name = lang
	}
	if driver == "docker" {
		name += " in Docker"
	}
	return name
}
