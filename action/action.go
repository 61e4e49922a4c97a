// Package action holds what the node knows about the actions a service
// returns before any of them runs: the built-in kinds (http, emit,
// publish, log, submit) with the schema of each one's params, and Check,
// which judges one run's output against the service's rules (the kinds
// its manifest declares, actions per run, numeric caps on named params).
// A run whose output breaks a rule executes nothing.
//
// Executors, which perform actions, are in package executor and the node.
// This package imports only the standard library and package contract,
// and does no I/O.
package action

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/andromeda-runner/andromeda/contract"
)

// The built-in kinds. An operator may register other kinds later; those
// are checked against the service's declared kinds only, not against a
// schema.
const (
	HTTP    = "http"    // params {method, url, headers?, body?}
	Emit    = "emit"    // params {topic, message}
	Publish = "publish" // the same as emit
	Log     = "log"     // params {message, level?, fields?}
	Submit  = "submit"  // params: any JSON object, with target? a string
)

// Builtin reports whether kind is one of the built-in kinds, whose params
// have a schema.
func Builtin(kind string) bool {
	switch kind {
	case HTTP, Emit, Publish, Log, Submit:
		return true
	}
	return false
}

// Rules are what one service's actions must keep to. The zero value
// allows no kind at all.
type Rules struct {
	// Kinds are the kinds the service may return: its manifest's
	// capabilities.actions, as admitted.
	Kinds []string
	// PerRun is the most actions one run may return; 0 means
	// contract.MaxActions. PerRunRule names where it comes from in errors
	// ("capabilities.caps.actions_per_run").
	PerRun     int
	PerRunRule string
	// Caps are numeric caps on named params, by kind then param name: an
	// action of that kind whose param is a number (or a string holding a
	// decimal number) above the cap breaks the rule. A capped param that
	// is present but not a number breaks it too; an absent one does not.
	Caps map[string]map[string]float64
	// CapsRule is the path of the caps in errors, followed by
	// ".KIND.PARAM" ("capabilities.caps.params").
	CapsRule string
	// URL, when set, judges the url of every http action (the service's
	// network grant): its error is the problem at params.url.
	URL func(url string) error
	// Target is the one target the service operates (its manifest's
	// target, as admitted). A submit action goes there: one naming
	// another target, or any submit of a service with no target, breaks
	// the rules. Checked only when CheckTarget is set.
	Target      string
	CheckTarget bool
	// Executor, when set, says whether the node has an executor for a
	// kind that is not built in (executors.kinds in its config); an
	// action of a kind it has none for breaks the rules.
	Executor func(kind string) bool
}

// A Problem is one broken rule of an output: the path of the offending
// part as the output spells it (actions[1].params.url) and the rule.
type Problem struct {
	Path string
	Rule string
}

func (p Problem) String() string { return p.Path + ": " + p.Rule }

// Violation is the error Check returns: every problem found, in the order
// of the actions. Its Error has one problem per line, at most
// maxReported of them.
type Violation []Problem

const maxReported = 16

func (v Violation) Error() string {
	var b strings.Builder
	for i, p := range v {
		if i == maxReported {
			fmt.Fprintf(&b, "\n… and %d more", len(v)-i)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Check judges out's actions against r: each kind must be declared, a
// built-in kind's params must match its schema, the number of actions
// and every capped param must stay within their caps. The error is a
// Violation listing every problem, or nil. Emits (the output's emit list)
// are not actions and are not checked here.
func (r Rules) Check(out contract.Output) error {
	var v Violation
	perRun := r.PerRun
	if perRun <= 0 {
		perRun = contract.MaxActions
	}
	if len(out.Actions) > perRun {
		rule := r.PerRunRule
		if rule == "" {
			rule = "the contract's limit"
		}
		v = append(v, Problem{"actions", fmt.Sprintf("%d actions, above the cap of %d per run (%s)", len(out.Actions), perRun, rule)})
	}
	for i, a := range out.Actions {
		at := "actions[" + strconv.Itoa(i) + "]"
		if !slices.Contains(r.Kinds, a.Kind) {
			declared := "none"
			if len(r.Kinds) > 0 {
				declared = strings.Join(r.Kinds, ", ")
			}
			v = append(v, Problem{at + ".kind", fmt.Sprintf("%q is not declared in capabilities.actions (%s)", a.Kind, declared)})
			continue
		}
		if !Builtin(a.Kind) && r.Executor != nil && !r.Executor(a.Kind) {
			v = append(v, Problem{at + ".kind", fmt.Sprintf("%q has no executor on this node (built in: http, emit, publish, log, submit; others are registered by the operator under executors.kinds)", a.Kind)})
			continue
		}
		params, problems := checkParams(a.Kind, a.Params)
		for _, p := range problems {
			v = append(v, Problem{at + "." + p.Path, p.Rule})
		}
		if len(problems) > 0 {
			continue
		}
		v = append(v, r.checkEffect(at, a.Kind, params)...)
		for _, name := range slices.Sorted(maps.Keys(r.Caps[a.Kind])) {
			if p, broken := r.capParam(a.Kind, name, params); broken {
				v = append(v, Problem{at + ".params." + name, p})
			}
		}
	}
	if len(v) == 0 {
		return nil
	}
	return v
}

// checkEffect checks where an action with well-formed params would reach:
// an http action's url against the network grant, a submit's target
// against the service's.
func (r Rules) checkEffect(at, kind string, params map[string]json.RawMessage) []Problem {
	switch {
	case kind == HTTP && r.URL != nil:
		var u string
		json.Unmarshal(params["url"], &u)
		if err := r.URL(u); err != nil {
			return []Problem{{at + ".params.url", strings.TrimPrefix(err.Error(), "url: ")}}
		}
	case kind == Submit && r.CheckTarget:
		var t string
		if raw, ok := params["target"]; ok {
			json.Unmarshal(raw, &t)
		}
		switch {
		case r.Target == "":
			return []Problem{{at, "the service names no target (target in its manifest), so it has nothing to submit to"}}
		case t != "" && t != r.Target:
			return []Problem{{at + ".params.target", fmt.Sprintf("%q is not this service's target %q: a service submits only to the target it was admitted for", t, r.Target)}}
		}
	}
	return nil
}

// CheckParams checks the params of one action of kind against the kind's
// schema. A kind that is not built in has no schema: its params are
// anything. Paths start at params ("params.url").
func CheckParams(kind string, params json.RawMessage) []Problem {
	_, p := checkParams(kind, params)
	return p
}

// capParam checks the param name of an action of kind against its cap.
func (r Rules) capParam(kind, name string, params map[string]json.RawMessage) (rule string, broken bool) {
	raw, ok := params[name]
	if !ok {
		return "", false
	}
	limit := r.Caps[kind][name]
	where := r.CapsRule
	if where == "" {
		where = "caps"
	}
	where += "." + kind + "." + name
	text, ok := numberText(raw)
	if !ok {
		return fmt.Sprintf("must be a number, or a string holding a decimal number, because %s caps it", where), true
	}
	if len(text) > maxNumberLen {
		return fmt.Sprintf("must be a number of at most %d characters (this one has %d), because %s caps it", maxNumberLen, len(text), where), true
	}
	n, ok := exact(text)
	if !ok {
		return fmt.Sprintf("must be a number, or a string holding a decimal number, because %s caps it", where), true
	}
	var capRat big.Rat
	capRat.SetFloat64(limit)
	if n.Cmp(&capRat) > 0 {
		return fmt.Sprintf("%s is above the cap %s (%s)", truncate(strings.TrimSpace(string(raw)), 64), strconv.FormatFloat(limit, 'f', -1, 64), where), true
	}
	return "", false
}

// maxNumberLen bounds the text of a capped number, sign and exponent
// included. big.Rat.SetString is far slower than linear on long mantissas
// (a million digits took seconds of the node's CPU, outside the service's
// sandbox), so a longer number is refused before it is parsed. 100
// characters hold any real quantity, even a 256-bit integer (78 digits).
const maxNumberLen = 100

// numberText reads a JSON number, or a JSON string holding a decimal
// number, as the text of the number.
func numberText(raw json.RawMessage) (string, bool) {
	text := strings.TrimSpace(string(raw))
	if strings.HasPrefix(text, `"`) {
		if err := json.Unmarshal(raw, &text); err != nil {
			return "", false
		}
	}
	var n json.Number
	if json.Unmarshal([]byte(text), &n) != nil || n == "" {
		return "", false // not a JSON number: "0x10", "1_000", "Inf" and the like
	}
	return string(n), true
}

// exact reads text, a JSON number of at most maxNumberLen characters,
// exactly.
func exact(text string) (*big.Rat, bool) {
	// A value beyond float64's range (1e999, 1e-999) is compared as the
	// float it rounds to, so that no exponent makes big.Rat do unbounded
	// work.
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		if math.IsInf(f, 0) {
			return new(big.Rat).SetFloat64(math.Copysign(math.MaxFloat64, f)), true
		}
		return new(big.Rat), true
	}
	return new(big.Rat).SetString(text)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
