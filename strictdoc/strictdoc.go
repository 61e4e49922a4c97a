// Package strictdoc reads a YAML or JSON document strictly into a tree of
// Values, and holds the errors that name a field by its path as the
// document spells it (resources.memory, triggers[1].every, config["a b"]).
// The manifest and the policy are both read through it, so both refuse the
// same things the same way: a second YAML document, trailing JSON, nesting
// deeper than a bound, syntax errors with their position, and duplicate
// keys, which the tree marks.
//
// It records YAML's extras as it finds them (aliases, merge keys, keys that
// are not strings, tags it does not resolve, numbers that are not finite)
// and leaves refusing them, and the words for that, to the document's own
// package; nor does it map the tree onto Go values, since each document has
// its own types and rules for that. It does no I/O.
//
// The name says what it holds: strict documents, and the field errors
// found in them.
package strictdoc

import (
	"reflect"
	"strconv"
	"strings"
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

// KeyPath names the key of the mapping at path as a reader would:
// limits.memory at the top level, registries["node.js"] and config["a b"]
// where the key is not a plain word.
func KeyPath(path, key string) string {
	simple := key != ""
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			simple = false
			break
		}
	}
	switch {
	case !simple:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

// IndexPath names item i of the list at path: triggers[1].
func IndexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// Fields maps the names a document uses for the fields of struct type t to
// their indexes: the name in the field's json tag, or the Go name when the
// tag gives none. Unexported fields and fields tagged "-" have no name.
func Fields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = i
	}
	return m
}
