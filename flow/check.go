package flow

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// Catalog is what Check knows of the node a flow is applied to.
type Catalog struct {
	// Services are the services a module may name, by name.
	Services map[string]Service
	// Runtimes are the runtimes modules may be placed on, by id (as GET
	// /v1/runtimes lists them), each with the languages it runs.
	Runtimes map[string][]string
}

// Service is what a flow needs to know of a service.
type Service struct {
	// Language is what its runtime runs: wasm, exec, node, python, or a
	// registered runtime's language.
	Language string
	// Runtime is the id of the runtime it runs on (as GET /v1/runtimes
	// lists it); empty: not known, any placement that runs its language
	// is taken.
	Runtime string
	// Inputs and Outputs are its ports; nil means the default, in and
	// out. error is always an output.
	Inputs, Outputs []string
}

// maxDescription bounds Flow.Description, in characters.
const maxDescription = 4096

// Check judges fl against cat and returns every problem as Errors, or
// nil: the flow's id and version, each module (a unique id; a known
// service or inline code in a language some runtime runs; a placement on
// a runtime that runs the module's language), each wire (known modules
// and ports, no duplicate, a loop only where it closes a cycle), cycles
// (each must pass a loop wire) and reachability (every module is reached
// from an entry: a module no wire leads to but loop wires).
func Check(fl *Flow, cat Catalog) error {
	c := checker{cat: cat}
	c.flow(fl)
	if len(c.errs) > 0 {
		return c.errs
	}
	return nil
}

type checker struct {
	cat  Catalog
	errs Errors
}

func (c *checker) fail(path, rule string, args ...any) {
	if len(args) > 0 {
		rule = fmt.Sprintf(rule, args...)
	}
	c.errs = append(c.errs, FieldError{Path: path, Rule: rule})
}

// node is a checked module: its ports and where it is in the list.
type node struct {
	index           int
	inputs, outputs []string
}

func (c *checker) flow(fl *Flow) {
	switch {
	case fl.ID == "":
		c.fail("id", "required")
	case !manifest.ValidName(fl.ID):
		c.fail("id", manifest.NameRule)
	}
	switch {
	case fl.Version == "":
		c.fail("version", "required")
	case !manifest.ValidVersion(fl.Version):
		c.fail("version", manifest.VersionRule)
	}
	if n := utf8.RuneCountInString(fl.Description); n > maxDescription {
		c.fail("description", "must be at most %d characters, got %d", maxDescription, n)
	}
	switch n := len(fl.Modules); {
	case n == 0:
		c.fail("modules", "at least one module is required")
	case n > MaxModules:
		c.fail("modules", "at most %d allowed, got %d", MaxModules, n)
		return
	}
	if n := len(fl.Wires); n > MaxWires {
		c.fail("wires", "at most %d allowed, got %d", MaxWires, n)
		return
	}
	nodes := map[string]*node{}
	for i := range fl.Modules {
		c.module(i, &fl.Modules[i], nodes)
	}
	edges := c.wires(fl.Wires, nodes)
	c.graph(fl, nodes, edges)
	c.triggers(fl.Triggers, nodes)
}

// triggers checks a flow's triggers: cron, event or http, with a
// service trigger's rules, each to a module the flow has.
func (c *checker) triggers(ts []Trigger, nodes map[string]*node) {
	if len(ts) > MaxTriggers {
		c.fail("triggers", "at most %d allowed, got %d", MaxTriggers, len(ts))
		return
	}
	ms := make([]manifest.Trigger, len(ts))
	refused := map[string]bool{} // paths of triggers whose kind is refused here
	for i, t := range ts {
		p := strictdoc.IndexPath("triggers", i)
		switch t.Kind {
		case string(manifest.KindCron), string(manifest.KindEvent), string(manifest.KindHTTP):
		case "":
			c.fail(p+".kind", "required")
			refused[p] = true
		case string(manifest.KindManual):
			c.fail(p+".kind", "a flow is fired by hand with andromeda flow fire (POST /v1/flows/{id}/fire), without a trigger")
			refused[p] = true
		default:
			c.fail(p+".kind", "must be cron, event or http")
			refused[p] = true
		}
		if t.Module != "" && nodes[t.Module] == nil {
			c.fail(p+".module", "no module %q", t.Module)
		}
		ms[i] = t.Manifest()
	}
	manifest.NormalizeTriggers(ms)
	for _, fe := range manifest.CheckTriggers(ms) {
		trig, _, _ := strings.Cut(fe.Path, ".")
		if !refused[trig] {
			c.fail(fe.Path, "%s", fe.Rule)
		}
	}
}

func (c *checker) module(i int, m *Module, nodes map[string]*node) {
	p := strictdoc.IndexPath("modules", i)
	n := &node{index: i, inputs: []string{PortIn}, outputs: []string{PortOut}}
	switch {
	case m.ID == "":
		c.fail(p+".id", "required")
	case !manifest.ValidName(m.ID):
		c.fail(p+".id", manifest.NameRule)
	case nodes[m.ID] != nil:
		c.fail(p+".id", "duplicate of %s", strictdoc.IndexPath("modules", nodes[m.ID].index))
	default:
		nodes[m.ID] = n
	}
	inline := m.Language != "" || m.Code != ""
	language, own := m.Language, ""
	switch {
	case m.Service != "" && inline:
		c.fail(p, "service and language/code are exclusive: a module runs a service or inline code")
	case m.Service == "" && !inline:
		c.fail(p, "one of service, or language and code, is required")
	case m.Service != "":
		s, ok := c.cat.Services[m.Service]
		if !ok {
			c.fail(p+".service", "no service named %q on this node", m.Service)
			break
		}
		language, own = s.Language, s.Runtime
		if s.Inputs != nil {
			n.inputs = s.Inputs
		}
		if s.Outputs != nil {
			n.outputs = s.Outputs
		}
	default:
		if m.Code == "" {
			c.fail(p+".code", "required with language")
		} else if len(m.Code) > MaxCode {
			c.fail(p+".code", "must be at most %d bytes, got %d", MaxCode, len(m.Code))
		}
		if m.Language == "" {
			c.fail(p+".language", "required with code")
		} else if runs := c.runtimesOf(m.Language); len(runs) == 0 {
			c.fail(p+".language", "no runtime on this node runs %q (languages: %s)", m.Language, strings.Join(c.languages(), ", "))
		}
	}
	if !slices.Contains(n.outputs, PortError) {
		n.outputs = append(slices.Clip(n.outputs), PortError)
	}
	if m.Runtime != "" {
		langs, ok := c.cat.Runtimes[m.Runtime]
		switch {
		case !ok:
			c.fail(p+".runtime", "no runtime %q on this node (runtimes: %s)", m.Runtime, strings.Join(c.runtimeIDs(), ", "))
		case language != "" && !slices.Contains(langs, language):
			c.fail(p+".runtime", "%s does not run %s (it runs: %s)", m.Runtime, language, strings.Join(langs, ", "))
		case own != "" && m.Runtime != own && !m.OnBrowser():
			c.fail(p+".runtime", "service %s runs on %s: a module runs where its service runs, or on a browser runtime (browser/ID)", m.Service, own)
		}
	}
	switch {
	case m.WhenGone == "":
	case !m.OnBrowser():
		c.fail(p+".when_gone", "only for a module placed on a browser runtime (runtime: browser/ID)")
	case m.WhenGone != WhenGoneQueue && m.WhenGone != WhenGoneFailover:
		c.fail(p+".when_gone", "must be %s or %s, got %q", WhenGoneQueue, WhenGoneFailover, m.WhenGone)
	}
}

// edge is a checked wire.
type edge struct {
	index    int
	from, to End
	loop     int
}

func (c *checker) wires(ws []Wire, nodes map[string]*node) []edge {
	var edges []edge
	seen := map[[2]End]int{}
	for i, w := range ws {
		p := strictdoc.IndexPath("wires", i)
		from, ok1 := c.end(p+".from", w.From, PortOut, nodes, func(n *node) []string { return n.outputs }, "output")
		to, ok2 := c.end(p+".to", w.To, PortIn, nodes, func(n *node) []string { return n.inputs }, "input")
		if w.Loop < 0 || w.Loop > MaxLoop {
			c.fail(p+".loop", "must be from 1 to %d rounds, or left out", MaxLoop)
			ok1 = false
		}
		if !ok1 || !ok2 {
			continue
		}
		if j, dup := seen[[2]End{from, to}]; dup {
			c.fail(p, "duplicate of %s", strictdoc.IndexPath("wires", j))
			continue
		}
		seen[[2]End{from, to}] = i
		edges = append(edges, edge{index: i, from: from, to: to, loop: w.Loop})
	}
	return edges
}

// end checks one end of a wire.
func (c *checker) end(path, s, def string, nodes map[string]*node, ports func(*node) []string, kind string) (End, bool) {
	e, err := ParseEnd(s, def)
	if err != nil {
		c.fail(path, "%v", err)
		return End{}, false
	}
	n := nodes[e.Module]
	if n == nil {
		c.fail(path, "no module %q in this flow", e.Module)
		return End{}, false
	}
	if !slices.Contains(ports(n), e.Port) {
		c.fail(path, "module %s has no %s port %q (its %s ports: %s)", e.Module, kind, e.Port, kind, strings.Join(ports(n), ", "))
		return End{}, false
	}
	return e, true
}

// graph checks cycles and reachability over the wires that passed.
func (c *checker) graph(fl *Flow, nodes map[string]*node, edges []edge) {
	all := map[string][]string{}  // every wire
	plain := map[string][]edge{}  // wires without a loop mark
	incoming := map[string]bool{} // modules a wire without a loop mark leads to
	for _, e := range edges {
		all[e.from.Module] = append(all[e.from.Module], e.to.Module)
		if e.loop == 0 {
			plain[e.from.Module] = append(plain[e.from.Module], e)
			incoming[e.to.Module] = true
		}
	}
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return nodes[ids[i]].index < nodes[ids[j]].index })

	// A cycle of plain wires: found by depth-first search, reported at
	// the wire that closes it, with its modules.
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(id string)
	visit = func(id string) {
		color[id] = grey
		stack = append(stack, id)
		for _, e := range plain[id] {
			switch color[e.to.Module] {
			case white:
				visit(e.to.Module)
			case grey:
				at := slices.Index(stack, e.to.Module)
				cycle := append(slices.Clone(stack[at:]), e.to.Module)
				c.fail(strictdoc.IndexPath("wires", e.index), "closes a cycle %s; mark one wire of it with loop: N (at most N rounds) to allow it", strings.Join(cycle, " → "))
			}
		}
		stack = stack[:len(stack)-1]
		color[id] = black
	}
	for _, id := range ids {
		if color[id] == white {
			visit(id)
		}
	}

	// A loop wire must close a cycle: its target leads back to its source.
	reaches := func(from, to string) bool {
		seen := map[string]bool{from: true}
		queue := []string{from}
		for len(queue) > 0 {
			id := queue[0]
			queue = queue[1:]
			if id == to {
				return true
			}
			for _, next := range all[id] {
				if !seen[next] {
					seen[next] = true
					queue = append(queue, next)
				}
			}
		}
		return false
	}
	for _, e := range edges {
		if e.loop > 0 && !reaches(e.to.Module, e.from.Module) {
			c.fail(strictdoc.IndexPath("wires", e.index)+".loop", "this wire closes no cycle: %s does not lead back to %s", e.to.Module, e.from.Module)
		}
	}

	// Every module is reached from an entry: a module no wire leads to
	// but loop wires (the way back of a loop).
	var entries []string
	for _, id := range ids {
		if !incoming[id] {
			entries = append(entries, id)
		}
	}
	if len(ids) > 0 && len(entries) == 0 {
		c.fail("modules", "no entry module: a wire without a loop mark leads to every module, so no message can enter the flow")
		return
	}
	reached := map[string]bool{}
	queue := slices.Clone(entries)
	for _, id := range queue {
		reached[id] = true
	}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		for _, next := range all[id] {
			if !reached[next] {
				reached[next] = true
				queue = append(queue, next)
			}
		}
	}
	for _, id := range ids {
		if !reached[id] {
			c.fail(strictdoc.IndexPath("modules", nodes[id].index), "unreachable: every wire into %s comes from a cycle no entry module leads to", id)
		}
	}
}

// runtimesOf returns the runtimes that run language, sorted.
func (c *checker) runtimesOf(language string) []string {
	var ids []string
	for id, langs := range c.cat.Runtimes {
		if slices.Contains(langs, language) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// languages returns every language some runtime runs, sorted.
func (c *checker) languages() []string {
	var out []string
	for _, langs := range c.cat.Runtimes {
		for _, l := range langs {
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	sort.Strings(out)
	return out
}

// runtimeIDs returns the runtimes' ids, sorted.
func (c *checker) runtimeIDs() []string {
	ids := make([]string, 0, len(c.cat.Runtimes))
	for id := range c.cat.Runtimes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
