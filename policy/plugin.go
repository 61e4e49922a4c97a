package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/strictdoc/strictjson"
)

// Admission plugins: a rule that names a service (Rule.Service) instead of
// a CEL expression. The node consults the plugin, an operator-owned
// service pinned by digest, and passes its answer in Submission.Plugins;
// Admit folds it into the decision like any other rule, so Admit stays
// pure. A plugin may reject a service or narrow its limits; it can never
// admit what a built-in rule refuses, nor grant more than the built-in
// rules allow.

// Bounds of plugin rules and their answers.
const (
	// DefaultPluginTimeout is a plugin rule's timeout when it sets none.
	DefaultPluginTimeout = 2 * time.Second
	// MaxPluginTimeout is the longest timeout a plugin rule may set: a
	// submission waits for its plugins.
	MaxPluginTimeout = 30 * time.Second
	// MaxPluginAnswer is the most bytes a plugin's answer may hold.
	MaxPluginAnswer = 64 << 10
	// MaxPluginReasons bounds the reasons of one answer, and
	// MaxPluginReasonLen each reason, in bytes.
	MaxPluginReasons   = 16
	MaxPluginReasonLen = 512
)

// The verdicts a plugin answers.
const (
	PluginRun    = "run"
	PluginReject = "reject"
)

var (
	archiveDigestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	// serviceNameRE is a manifest's name rule.
	serviceNameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// PluginRule is a plugin rule of a compiled policy: what the node needs to
// consult it.
type PluginRule struct {
	// Name is the rule's name; its answer goes in Submission.Plugins[Name].
	Name string
	// Service is the plugin service's name.
	Service string
	// Digest is the archive digest the plugin service must have.
	Digest string
	// Timeout bounds one consultation.
	Timeout time.Duration
}

// Plugins returns the policy's plugin rules in policy order; nil when it
// has none.
func (c *Compiled) Plugins() []PluginRule {
	var out []PluginRule
	for _, r := range c.rules {
		if r.service != "" {
			out = append(out, PluginRule{Name: r.name, Service: r.service, Digest: r.digest, Timeout: r.timeout})
		}
	}
	return out
}

// PluginAnswer is what an admission plugin answered for one submission,
// or why it gave no usable answer. ParsePluginAnswer reads a plugin's
// output into one.
type PluginAnswer struct {
	// Verdict is run (the plugin does not object; its limits narrow the
	// decision) or reject (the rule fails with the reasons).
	Verdict string `json:"verdict"`
	// Reasons say why, each one line; at most MaxPluginReasons of at most
	// MaxPluginReasonLen bytes.
	Reasons []string `json:"reasons,omitempty"`
	// Limits narrow what the built-in rules allow (a limit above it is
	// clamped to it); an unset limit leaves it.
	Limits PluginLimits `json:"limits,omitzero"`
	// Failure, when not empty, is why the plugin gave no usable answer
	// (not there, timed out, crashed, answered badly); the rule fails with
	// it. Set by the node, never decoded from an answer.
	Failure string `json:"-"`
}

// PluginLimits are the limits a plugin answers, written as in a manifest's
// resources.
type PluginLimits struct {
	Memory      manifest.Bytes    `json:"memory,omitzero"`
	CPU         manifest.CPU      `json:"cpu,omitzero"`
	Timeout     manifest.Duration `json:"timeout,omitzero"`
	Pids        int               `json:"pids,omitempty"`
	Concurrency int               `json:"concurrency,omitempty"`
}

// PluginFailed is the answer of a plugin that gave no usable one, with why.
func PluginFailed(format string, args ...any) PluginAnswer {
	return PluginAnswer{Failure: fmt.Sprintf(format, args...)}
}

// ParsePluginAnswer decodes a plugin's answer strictly ({"verdict": "run"
// or "reject", "reasons": [...], "limits": {"memory": "128Mi", "cpu":
// "0.5", "timeout": "2s", "pids": 16, "concurrency": 2}}; an unknown field
// is an error) and checks it. The error names the field and the rule.
func ParsePluginAnswer(raw []byte) (PluginAnswer, error) {
	if len(raw) > MaxPluginAnswer {
		return PluginAnswer{}, fmt.Errorf("the answer is %d bytes, more than %d", len(raw), MaxPluginAnswer)
	}
	// Sizes, shares and durations are decoded one by one, so that a bad one
	// is named by its path.
	var w struct {
		Verdict string   `json:"verdict"`
		Reasons []string `json:"reasons"`
		Limits  struct {
			Memory      json.RawMessage `json:"memory"`
			CPU         json.RawMessage `json:"cpu"`
			Timeout     json.RawMessage `json:"timeout"`
			Pids        *int            `json:"pids"`
			Concurrency *int            `json:"concurrency"`
		} `json:"limits"`
	}
	if err := strictjson.Unmarshal(raw, &w); err != nil {
		return PluginAnswer{}, err
	}
	a := PluginAnswer{Verdict: w.Verdict, Reasons: w.Reasons}
	// In an answer, 0 is a count like any other, and refused as memory
	// "0" is; only a limit left out (or null) is unset.
	var counts []error
	for _, f := range []struct {
		name string
		n    *int
		v    *int
	}{{"pids", w.Limits.Pids, &a.Limits.Pids}, {"concurrency", w.Limits.Concurrency, &a.Limits.Concurrency}} {
		switch {
		case f.n == nil:
		case *f.n <= 0:
			counts = append(counts, fmt.Errorf("limits.%s: must be more than 0, not %d (leave it out to keep what the built-in rules allow)", f.name, *f.n))
		default:
			*f.v = *f.n
		}
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		v    json.Unmarshaler
	}{{"memory", w.Limits.Memory, &a.Limits.Memory}, {"cpu", w.Limits.CPU, &a.Limits.CPU}, {"timeout", w.Limits.Timeout, &a.Limits.Timeout}} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			continue
		}
		if err := f.v.UnmarshalJSON(f.raw); err != nil {
			return PluginAnswer{}, fmt.Errorf("limits.%s: %w", f.name, err)
		}
	}
	if err := errors.Join(a.Check(), errors.Join(counts...)); err != nil {
		return PluginAnswer{}, err
	}
	return a, nil
}

// Check reports what breaks the rules of an answer, every problem with its
// field; nil for a failure (Failure set) and for a good answer.
func (a PluginAnswer) Check() error {
	if a.Failure != "" {
		return nil
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch a.Verdict {
	case PluginRun, PluginReject:
	case "":
		bad("verdict: required: run or reject")
	default:
		bad("verdict: must be run or reject, not %q", truncateRunes(a.Verdict, 32))
	}
	if len(a.Reasons) > MaxPluginReasons {
		bad("reasons: at most %d, got %d", MaxPluginReasons, len(a.Reasons))
	}
	for i, r := range a.Reasons {
		switch {
		case strings.TrimSpace(r) == "":
			bad("reasons[%d]: must not be empty", i)
		case len(r) > MaxPluginReasonLen:
			bad("reasons[%d]: at most %d bytes", i, MaxPluginReasonLen)
		case strings.ContainsAny(r, "\r\n\x00") || !utf8.ValidString(r):
			bad("reasons[%d]: must be one line of text", i)
		}
	}
	l := a.Limits
	if !l.Memory.IsZero() && l.Memory.Int64() <= 0 {
		bad("limits.memory: must be more than 0")
	}
	if !l.CPU.IsZero() && !(l.CPU.Cores() > 0) {
		bad("limits.cpu: must be more than 0")
	}
	if !l.Timeout.IsZero() && l.Timeout.Std() <= 0 {
		bad("limits.timeout: must be more than 0")
	}
	// 0 is unset here; ParsePluginAnswer refuses an answered 0.
	if l.Pids < 0 {
		bad("limits.pids: must be more than 0, not %d", l.Pids)
	}
	if l.Concurrency < 0 {
		bad("limits.concurrency: must be more than 0, not %d", l.Concurrency)
	}
	return errors.Join(errs...)
}

// plugin folds the answer of plugin rule r into the decision.
func (a *admission) plugin(r compiledRule) {
	rule := "rules." + r.name
	if a.preliminary {
		a.info(rule, true, "plugin %s not consulted yet: plugins are consulted after the built-in rules, for a service those would run", r.service)
		return
	}
	ans, ok := a.sub.Plugins[r.name]
	if !ok {
		a.add(rule, false, "plugin %s was not consulted: the node consults admission plugins before it decides", r.service)
		return
	}
	if ans.Failure != "" {
		a.add(rule, false, "plugin %s: %s", r.service, ans.Failure)
		return
	}
	if err := ans.Check(); err != nil {
		a.add(rule, false, "plugin %s answered badly: %s", r.service, strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	said := strings.Join(ans.Reasons, "; ")
	if ans.Verdict == PluginReject {
		if said == "" {
			said = r.message
		}
		a.add(rule, false, "plugin %s rejects: %s", r.service, said)
		return
	}
	parts := []string{fmt.Sprintf("plugin %s answers run", r.service)}
	if said != "" {
		parts[0] += ": " + said
	}
	parts = append(parts, a.narrow(ans.Limits)...)
	a.add(rule, true, "%s", strings.Join(parts, "; "))
}

// narrow takes each limit of a plugin's answer that is below what the
// decision allows; one above it is clamped (left as it is). It says what
// it did with each.
func (a *admission) narrow(l PluginLimits) []string {
	var notes []string
	lim := &a.d.Limits
	fold := func(what string, answered, allowed string, below, above bool, take func()) {
		switch {
		case below:
			take()
			notes = append(notes, fmt.Sprintf("%s narrowed to %s (the built-in rules allow %s)", what, answered, allowed))
		case above:
			notes = append(notes, fmt.Sprintf("%s %s clamped to %s: a plugin narrows what the built-in rules allow, never widens it", what, answered, allowed))
		default:
			notes = append(notes, fmt.Sprintf("%s %s, as the built-in rules allow", what, answered))
		}
	}
	if m := l.Memory; !m.IsZero() {
		n := m.Int64()
		fold("memory", memory(m), sizeString(lim.Memory), n < lim.Memory, n > lim.Memory, func() { lim.Memory = n })
	}
	if c := l.CPU; !c.IsZero() {
		n := c.Cores()
		fold("cpu", cores(c), coresFloat(lim.CPU), n < lim.CPU, n > lim.CPU, func() { lim.CPU = n })
	}
	if d := l.Timeout; !d.IsZero() {
		n, allowed := d.Std(), time.Duration(lim.TimeoutMS)*time.Millisecond
		// Decisions count whole milliseconds; a timeout under one is one.
		ms := max(n.Milliseconds(), 1)
		fold("timeout", d.String(), allowed.String(), ms < lim.TimeoutMS, ms > lim.TimeoutMS, func() { lim.TimeoutMS = ms })
	}
	if n := l.Pids; n > 0 {
		fold("pids", fmt.Sprint(n), fmt.Sprint(lim.Pids), n < lim.Pids, n > lim.Pids, func() { lim.Pids = n })
	}
	if n := l.Concurrency; n > 0 {
		fold("concurrency", fmt.Sprint(n), fmt.Sprint(lim.Concurrency), n < lim.Concurrency, n > lim.Concurrency, func() { lim.Concurrency = n })
	}
	return notes
}

func coresFloat(f float64) string {
	if f == 1 {
		return "1 core"
	}
	return formatFloat(f) + " cores"
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// Preliminary is Admit without the admission plugins: every plugin rule
// gets a reason saying it is not consulted yet, and decides nothing. The
// node decides with it whether to consult the plugins at all (a service
// the built-in rules refuse costs no plugin run, since no plugin could
// admit it) and hands it to them as the decision so far. It is as pure as
// Admit.
func (c *Compiled) Preliminary(sub Submission, node Node) Decision {
	return c.admit(sub, node, true)
}

// pluginRule checks a rule that names an admission plugin (or sets a
// plugin's digest or timeout).
func (v *validator) pluginRule(path string, r Rule) {
	if r.Expr != "" {
		v.fail(path, "set expr (a CEL condition) or service (an admission plugin), not both")
	}
	switch {
	case r.Service == "":
		v.fail(path+".service", "required with digest and timeout: the admission plugin's service name")
	case !serviceNameRE.MatchString(r.Service):
		v.fail(path+".service", "must be a service name: [a-z]([a-z0-9-]{0,61}[a-z0-9])?")
	}
	switch {
	case r.Digest == "" && r.Service != "":
		v.fail(path+".digest", "required with service: the plugin service's archive digest, sha256:<64 hex>")
	case r.Digest != "" && !archiveDigestRE.MatchString(r.Digest):
		v.fail(path+".digest", "must be sha256: and 64 lowercase hex digits")
	}
	if d := r.Timeout.Std(); !r.Timeout.IsZero() && (d < time.Millisecond || d > MaxPluginTimeout) {
		v.fail(path+".timeout", fmt.Sprintf("must be from 1ms to %s", MaxPluginTimeout))
	}
}
