package strictdoc

import (
	"fmt"
	"path/filepath"
	"strings"
)

// A Format is a syntax documents are written in, reading it into a tree of
// Values that is the same for every syntax: YAML and JSON. Adding one
// (TOML) is one implementation of Read. A Format has no state and is safe
// for concurrent use.
type Format interface {
	// Read reads exactly one document from data, which is valid UTF-8
	// without a byte order mark. An empty document (nothing but white
	// space and comments) is nil and no error where the syntax has one;
	// a syntax without empty documents refuses it: "must not be empty".
	// A value more than maxDepth levels below the top-level value is an
	// error at its path, and reading stops there. What the syntax has
	// beyond the tree is read as a Bad value, or a Pair with a KeyRule,
	// whose rule says so ("YAML aliases are not supported"), so that one
	// pass reports all of it. Every error is a *ReadError.
	Read(data []byte, maxDepth int) (*Value, error)
}

// The formats.
var (
	// YAML reads one YAML document (go.yaml.in/yaml/v3, the core schema):
	// aliases, merge keys, keys that are not strings and tags other than
	// !!str, !!int, !!float, !!bool, !!null, !!timestamp, !!seq and !!map
	// are refused. A timestamp is read as the string written.
	YAML Format = yamlFormat{}
	// JSON reads one JSON value, with nothing after it but white space.
	JSON Format = jsonFormat{}
	// TOML reads one TOML document (TOML 1.0 and 1.1, with
	// github.com/pelletier/go-toml/v2's parser): its root is always a
	// mapping. A key defined twice, by a pair, a table header or a
	// dotted key, is a duplicate key at its path; dates and times read
	// as the strings written.
	TOML Format = tomlFormat{}
)

// FormatOf returns the format of a file by its extension, in any case:
// .yaml and .yml are YAML, .json JSON, .toml TOML; false for any other.
func FormatOf(name string) (Format, bool) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml":
		return YAML, true
	case ".json":
		return JSON, true
	case ".toml":
		return TOML, true
	}
	return nil, false
}

// A ReadError is why a Format could not read a document: the path where
// it stopped ("" for the document as a whole: a syntax error, a second
// document) and the rule. Decoder reports it as a FieldError.
type ReadError struct {
	Path, Rule string
}

// Error returns "path: rule", or the rule alone for the document as a
// whole.
func (e *ReadError) Error() string {
	if e.Path == "" {
		return e.Rule
	}
	return e.Path + ": " + e.Rule
}

func tooDeep(path string, maxDepth int) error {
	return &ReadError{Path: path, Rule: fmt.Sprintf("must not nest deeper than %d levels", maxDepth)}
}

// Kind is what a Value is.
type Kind uint8

const (
	Null   Kind = iota // null (YAML: also ~ and an empty value)
	Bool               // true or false
	Number             // an integer or a decimal
	String             // a string
	List               // a list: Items
	Map                // a mapping: Pairs, in document order
	Bad                // something the format reads but no document accepts: Rule says what
)

// String names the kind as the end of a rule reads it: "must be a string,
// not a number".
func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Bool:
		return "a boolean"
	case Number:
		return "a number"
	case String:
		return "a string"
	case List:
		return "a list"
	case Map:
		return "a mapping"
	}
	return "unsupported"
}

// A Value is one node of a document.
type Value struct {
	Kind Kind
	// Text is a scalar as written: the string, the number (0x1F, 1.0 and
	// .inf in YAML), true or false, the null. Empty for a list, a mapping
	// and a Bad value.
	Text string
	// Bool is a Bool's value.
	Bool bool
	// Num is a Number in JSON syntax: Text for JSON, the value YAML
	// resolves written again (16 for 0x10). Empty when the number is not
	// finite (YAML .inf and .nan).
	Num string
	// Items are a List's items.
	Items []*Value
	// Pairs are a Map's entries, in document order, duplicates included.
	Pairs []Pair
	// Rule is the rule a Bad value breaks.
	Rule string
}

// A Pair is one entry of a mapping.
type Pair struct {
	// Key is the key as written; "?" when the key is not a scalar.
	Key string
	// KeyRule is the rule the key breaks, "" for a string key: a YAML
	// key that is a number, a boolean, null, a list or a mapping, or a
	// merge key (<<).
	KeyRule string
	// Dup reports that an earlier key of the same mapping has the same
	// Key.
	Dup bool
	// Value is the value; nil when KeyRule is set, since no document
	// reads what such a key holds.
	Value *Value
}
