package policy

import (
	"cmp"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/source"
)

// ruleCostLimit caps the evaluation cost of one rule.
const ruleCostLimit = 100_000

// Compiled is a validated policy ready to admit services: rules compiled,
// keys parsed, lookups built. It is immutable and safe for concurrent use.
type Compiled struct {
	p      Policy
	digest string

	hubs     map[string]hubEntry // raw public key → hub
	keywords map[string]bool
	network  []source.HostPattern
	prefer   map[string]map[string]bool // driver → languages
	origins  map[originKey]int          // → index in p.Origins.Prefer
	shared   map[string]bool
	dockerRe []string // registries.docker as reference prefixes (DockerPrefixes)
	rules    []compiledRule
}

type hubEntry struct {
	name   string
	weight float64
}

type originKey struct{ kind, id string }

type compiledRule struct {
	name, message string
	prg           cel.Program // nil for a plugin rule

	service, digest string // a plugin rule's
	timeout         time.Duration
}

// Compile validates p (a normalized copy of it) and prepares it for Admit.
// The error is an Errors with every problem: Validate's, and each rule that
// does not compile or is not a bool, named "rules[2] (no-weekend-jobs)".
func Compile(p Policy) (*Compiled, error) {
	p = p.clone()
	p.Normalize()
	var errs Errors
	if err := p.Validate(); err != nil {
		errs = append(errs, err.(Errors)...)
	}
	c := &Compiled{
		p:        p,
		hubs:     map[string]hubEntry{},
		keywords: setOf(p.Keywords),
		network:  parseNetPatterns(p.Network.Hosts),
		prefer:   map[string]map[string]bool{},
		origins:  map[originKey]int{},
		shared:   setOf(p.SharedTargets),
	}
	for _, h := range p.TrustedHubs {
		if k, err := attest.ParsePublicKey(h.Key); err == nil {
			c.hubs[string(k)] = hubEntry{name: h.Name, weight: h.Weight}
		}
	}
	for drv, langs := range p.PreferDrivers {
		c.prefer[drv] = setOf(langs)
	}
	for i, o := range p.Origins.Prefer {
		c.origins[originKey{o.Kind, o.ID}] = i
	}
	c.dockerRe = DockerPrefixes(p.Registries["docker"])
	if len(p.Rules) > 0 {
		env, err := celEnv()
		if err != nil {
			return nil, fmt.Errorf("policy: rules environment: %w", err)
		}
		for i, r := range p.Rules {
			path := fmt.Sprintf("rules[%d] (%s)", i, r.Name)
			if r.Service != "" {
				msg := r.Message
				if msg == "" {
					msg = fmt.Sprintf("rule %s does not hold", r.Name)
				}
				c.rules = append(c.rules, compiledRule{name: r.Name, message: msg, service: r.Service, digest: r.Digest, timeout: r.Timeout.Std()})
				continue
			}
			if strings.TrimSpace(r.Expr) == "" || len(r.Expr) > 4096 {
				continue // Validate reported it
			}
			ast, iss := env.Compile(r.Expr)
			if iss.Err() != nil {
				errs = append(errs, FieldError{Path: path, Rule: "expr does not compile: " + iss.Err().Error()})
				continue
			}
			if !ast.OutputType().IsExactType(cel.BoolType) {
				errs = append(errs, FieldError{Path: path, Rule: fmt.Sprintf("expr must be a bool, not %s", ast.OutputType())})
				continue
			}
			prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(ruleCostLimit))
			if err != nil {
				errs = append(errs, FieldError{Path: path, Rule: "expr: " + err.Error()})
				continue
			}
			msg := r.Message
			if msg == "" {
				msg = fmt.Sprintf("rule %s does not hold", r.Name)
			}
			c.rules = append(c.rules, compiledRule{name: r.Name, message: msg, prg: prg})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	c.digest = p.Digest()
	return c, nil
}

// Policy returns a copy of the compiled (normalized) policy.
func (c *Compiled) Policy() Policy { return c.p.clone() }

// Digest returns the policy's digest; see Policy.Digest.
func (c *Compiled) Digest() string { return c.digest }

func setOf(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

// The CEL environment: one per process, built on first use.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(
			reflect.TypeFor[celService](), reflect.TypeFor[celSubmission](), reflect.TypeFor[celNode](),
			ext.ParseStructTags(true),
		),
		cel.Variable("service", cel.ObjectType("policy.celService")),
		cel.Variable("submission", cel.ObjectType("policy.celSubmission")),
		cel.Variable("node", cel.ObjectType("policy.celNode")),
		cel.CrossTypeNumericComparisons(true),
		ext.Strings(),
	)
})

// The values rules see; the package documentation lists them.
type (
	celService struct {
		Name         string          `cel:"name"`
		Version      string          `cel:"version"`
		Title        string          `cel:"title"`
		Description  string          `cel:"description"`
		Keywords     []string        `cel:"keywords"`
		Runtime      celRuntime      `cel:"runtime"`
		Mode         string          `cel:"mode"`
		Triggers     []celTrigger    `cel:"triggers"`
		Resources    celResources    `cel:"resources"`
		Capabilities celCapabilities `cel:"capabilities"`
		Target       string          `cel:"target"`
		Source       celSource       `cel:"source"`
		Reward       celReward       `cel:"reward"`
		Config       map[string]any  `cel:"config"`
	}
	celRuntime struct {
		Driver   string   `cel:"driver"`
		Language string   `cel:"language"`
		Entry    string   `cel:"entry"`
		Image    string   `cel:"image"`
		Command  []string `cel:"command"`
	}
	celTrigger struct {
		Kind     string  `cel:"kind"`
		Every    float64 `cel:"every"`
		Schedule string  `cel:"schedule"`
		Topic    string  `cel:"topic"`
		Path     string  `cel:"path"`
	}
	celResources struct {
		Memory      int64   `cel:"memory"`
		CPU         float64 `cel:"cpu"`
		Timeout     float64 `cel:"timeout"`
		Pids        int64   `cel:"pids"`
		Concurrency int64   `cel:"concurrency"`
	}
	celCapabilities struct {
		Network string   `cel:"network"`
		Hosts   []string `cel:"hosts"`
		Actions []string `cel:"actions"`
		State   bool     `cel:"state"`
	}
	celSource struct {
		Location string `cel:"location"`
		Git      string `cel:"git"`
		Commit   string `cel:"commit"`
		Ref      string `cel:"ref"`
		Path     string `cel:"path"`
		Host     string `cel:"host"` // of location or git
		Digest   string `cel:"digest"`
	}
	celReward struct {
		Amount float64 `cel:"amount"`
		Unit   string  `cel:"unit"`
	}
	celSubmission struct {
		Digest   string    `cel:"digest"`
		Payload  int64     `cel:"payload"`
		Origin   celOrigin `cel:"origin"`
		Hops     []string  `cel:"hops"`
		Signers  []string  `cel:"signers"`
		Weight   float64   `cel:"weight"`
		Upgrade  bool      `cel:"upgrade"`
		Previous string    `cel:"previous"`
		Growth   []string  `cel:"growth"`
	}
	celOrigin struct {
		Kind  string  `cel:"kind"`
		ID    string  `cel:"id"`
		Stake float64 `cel:"stake"`
	}
	celNode struct {
		Drivers  map[string]bool `cel:"drivers"`
		Services int64           `cel:"services"`
		Now      time.Time       `cel:"now"`
	}
)

// activation hands the three variables to a program without a map.
type activation struct {
	service    *celService
	submission *celSubmission
	node       *celNode
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "service":
		return a.service, true
	case "submission":
		return a.submission, true
	case "node":
		return a.node, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

func newCELService(m *manifest.Service) *celService {
	s := &celService{
		Name: m.Name, Version: m.Version, Title: m.Title, Description: m.Description,
		Keywords: nonNil(m.Keywords),
		Runtime: celRuntime{
			Driver: string(m.Runtime.Driver), Language: m.Runtime.Language, Entry: m.Runtime.Entry,
			Image: m.Runtime.Image, Command: nonNil(m.Runtime.Command),
		},
		Mode: string(m.Mode),
		Resources: celResources{
			Memory: m.Resources.Memory.Int64(), CPU: m.Resources.CPU.Cores(),
			Timeout: m.Resources.Timeout.Std().Seconds(),
			Pids:    int64(m.Resources.Pids), Concurrency: int64(m.Resources.Concurrency),
		},
		Capabilities: celCapabilities{
			Network: "list", Hosts: nonNil(m.Capabilities.Network.Hosts),
			Actions: nonNil(m.Capabilities.Actions), State: m.Capabilities.State,
		},
		Target: m.Target,
		Source: celSource{
			Location: m.Source.Location, Git: m.Source.Git, Commit: m.Source.Commit,
			Ref: m.Source.Ref, Path: m.Source.Path, Digest: m.Source.Digest,
		},
		Reward: celReward{Amount: m.Reward.Amount, Unit: m.Reward.Unit},
		Config: m.Config,
	}
	switch {
	case m.Capabilities.Network.Any:
		s.Capabilities.Network = "any"
	case len(m.Capabilities.Network.Hosts) == 0:
		s.Capabilities.Network = "none"
	}
	if loc := cmp.Or(m.Source.Location, m.Source.Git); loc != "" {
		if u, err := url.Parse(loc); err == nil {
			s.Source.Host = u.Host
		}
	}
	if s.Config == nil {
		s.Config = map[string]any{}
	}
	s.Triggers = make([]celTrigger, len(m.Triggers))
	for i, t := range m.Triggers {
		s.Triggers[i] = celTrigger{Kind: string(t.Kind), Every: t.Every.Std().Seconds(), Schedule: t.Schedule, Topic: t.Topic, Path: t.Path}
	}
	return s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
