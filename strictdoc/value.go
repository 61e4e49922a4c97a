package strictdoc

import (
	"fmt"
)

// A Reader reads documents of kind D into Values; every error it returns
// is an Errors[D]. A Reader is a value with no state: safe for concurrent
// use.
type Reader[D Doc] struct {
	// MaxDepth bounds nesting: a value more than MaxDepth levels below
	// the top-level value is an error at its path, and reading stops
	// there. The zero value reads only a scalar or an empty list or
	// mapping.
	MaxDepth int
}

func (r Reader[D]) tooDeep(path string) error {
	return Errors[D]{{Path: path, Rule: fmt.Sprintf("must not nest deeper than %d levels", r.MaxDepth)}}
}

// Kind is what a Value is.
type Kind uint8

const (
	Null   Kind = iota // null, ~, an empty YAML document
	Bool               // true or false
	Number             // an integer or a decimal
	String             // a string; also a YAML timestamp (2024-01-02), with Tag !!timestamp
	List               // a list: Items
	Map                // a mapping: Pairs, in document order
	Alias              // a YAML alias (*name); the reader does not follow it
	Tagged             // a YAML scalar with a tag the reader does not resolve, such as !!binary or !thing: Tag
	Bad                // a YAML node that is not what its tag says (!!bool maybe): Rule says what it breaks
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
	case Alias:
		return "an alias"
	case Tagged:
		return "a tagged value"
	}
	return "unsupported"
}

// A Value is one node of a document read from YAML or JSON.
type Value struct {
	Kind Kind
	// Text is a scalar as written: the string, the number (0x1F and .inf
	// in YAML), true or false, the null ("" for an empty YAML document),
	// a Tagged scalar's text. Empty for a list or a mapping.
	Text string
	// Tag is the YAML tag of the node in short form: !!str, !!int,
	// !!timestamp, !!map, !thing. Empty for JSON and for an Alias.
	Tag string
	// Bool is a Bool's value.
	Bool bool
	// Num is a Number in JSON syntax: Text for JSON, the value decoded
	// from YAML written again (16 for 0x10). Empty when the number is not
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
	// KeyTag is the key's YAML tag: !!str for a string and for every
	// JSON key, !!merge for a YAML merge key (<<), another tag for
	// another scalar (1, true), empty when the key is not a scalar.
	KeyTag string
	// Dup reports that an earlier key of the same mapping has the same
	// Key.
	Dup bool
	// Value is the value; nil for a merge key or a key that is not a
	// scalar, which no document accepts, so the reader does not read
	// what they hold.
	Value *Value
}
