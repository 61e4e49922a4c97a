// Package strictdoc is the one strict decoder of Andromeda's documents: the
// service manifest, the policy and the node config are all read through it,
// so they refuse the same things with the same words, each problem naming
// the field by its path as the document spells it (resources.memory,
// triggers[1].every, policy.limits.memory, config["a b"]).
//
// Decoding is two steps. A Format (YAML, JSON, TOML) reads the bytes into
// a tree of Values; Decoder then maps the tree onto a Go value by its json
// tags, over what the value already holds (its defaults), collecting every
// problem. The rules, for every document and format:
//
//   - one document: one YAML document, one JSON value with nothing but
//     white space after it, or one TOML document; valid UTF-8 (a byte
//     order mark is skipped), at most Decoder.MaxSize bytes, nested at
//     most Decoder.MaxDepth levels;
//   - a field the Go type does not have is an error, with the nearest
//     known name when one is close: unknown field "memroy" (did you mean
//     "memory"?); so is a key written twice (in TOML also a table
//     defined twice, by headers or dotted keys);
//   - null is an error, wherever it is written (an empty YAML value,
//     "key:", is null too), except inside a free-form value (a Go any,
//     such as a manifest's config), where it is data;
//   - a value must have its field's type: a string (a number or a boolean
//     must be quoted to be one), true or false, an integer, a finite
//     number, a list or a mapping; mapping keys are strings;
//   - YAML's extras are refused: aliases, merge keys, and tags other than
//     the core schema's (a YAML timestamp reads as the string written).
//
// Hooks decode what these rules do not cover: values written with units
// (sizes, durations, CPU shares, see Scalar), values with a shape of their
// own (a network that is "any" or a list of hosts), and fields a document
// reads differently from their Go type.
//
// The package does no I/O and knows no document: each document's package
// holds its own Go types, hooks and validation.
package strictdoc

import (
	"strconv"
	"strings"

	"github.com/andromeda-runner/andromeda/strictdoc/strictjson"
)

// A Doc names a kind of document. Implementations are empty structs whose
// Name is a constant: it prefixes an error about the document as a whole
// ("manifest: must not be empty"), and being a type it keeps the errors of
// two kinds of document apart, so errors.As tells a manifest's Errors from
// a policy's.
type Doc interface {
	~struct{}
	Name() string
}

// A FieldError is one problem with a document of kind D: the path of the
// field it concerns and the rule that field breaks. An empty Path is the
// document as a whole.
type FieldError[D Doc] struct {
	Path string `json:"path"`
	Rule string `json:"rule"`
}

// Error returns "path: rule", or "name: rule", with D's Name, for the
// document as a whole.
func (e FieldError[D]) Error() string {
	if e.Path == "" {
		var d D
		return d.Name() + ": " + e.Rule
	}
	return e.Path + ": " + e.Rule
}

// Errors is every problem found with a document of kind D, in the order
// found.
type Errors[D Doc] []FieldError[D]

// Error returns one FieldError per line.
func (e Errors[D]) Error() string {
	lines := make([]string, len(e))
	for i, fe := range e {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Nest returns the problems of a document of kind E that is the field at
// path parent of a document of kind D (a policy, the policy section of a
// node config) as problems of the outer document: rules[0] becomes
// policy.rules[0], and a problem with the whole inner document is one with
// the field parent.
func Nest[D, E Doc](parent string, errs Errors[E]) Errors[D] {
	out := make(Errors[D], len(errs))
	for i, fe := range errs {
		out[i] = FieldError[D]{Path: JoinPath(parent, fe.Path), Rule: fe.Rule}
	}
	return out
}

// JoinPath names the field at path child of the field at path parent:
// policy and limits.memory give policy.limits.memory, config and ["a b"]
// give config["a b"].
func JoinPath(parent, child string) string {
	switch {
	case child == "":
		return parent
	case parent == "" || strings.HasPrefix(child, "["):
		return parent + child
	}
	return parent + "." + child
}

// KeyPath names the key of the mapping at path as a reader would:
// limits.memory at the top level, registries["node.js"] and config["a b"]
// where the key is not a plain word.
func KeyPath(path, key string) string { return strictjson.KeyPath(path, key) }

// IndexPath names item i of the list at path: triggers[1].
func IndexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }
