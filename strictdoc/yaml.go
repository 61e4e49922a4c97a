package strictdoc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

type yamlFormat struct{}

// Read reads exactly one YAML document. An empty document (nothing, only
// comments, or "---") is nil. Syntax errors and a second document are
// errors about the document as a whole. The YAML parser has panicked on
// hostile input in the past; a document is untrusted, so such a panic is
// returned as a syntax error.
func (yamlFormat) Read(data []byte, maxDepth int) (root *Value, err error) {
	defer func() {
		if p := recover(); p != nil {
			root, err = nil, &ReadError{Rule: fmt.Sprintf("yaml syntax: %v", p)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlSyntax(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, &ReadError{Rule: fmt.Sprintf("must be one YAML document, found another at line %d", next.Line)}
	case !errors.Is(err, io.EOF):
		return nil, yamlSyntax(err)
	}
	return readYAMLNode(&doc, maxDepth)
}

func yamlSyntax(err error) error {
	return &ReadError{Rule: "yaml syntax: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}

// readYAMLNode reads a node the YAML package has parsed already: a
// document, or a value as an UnmarshalYAML method receives it, with paths
// relative to it. An empty document is nil.
func readYAMLNode(n *yaml.Node, maxDepth int) (*Value, error) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil, nil
		}
		n = n.Content[0]
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" && n.Value == "" {
			return nil, nil // "---" and nothing else
		}
	}
	return yamlReader{maxDepth}.node(n, "", 0)
}

type yamlReader struct{ maxDepth int }

func (r yamlReader) node(n *yaml.Node, path string, depth int) (*Value, error) {
	if depth > r.maxDepth {
		return nil, tooDeep(path, r.maxDepth)
	}
	switch n.Kind {
	case yaml.AliasNode:
		return &Value{Kind: Bad, Rule: "YAML aliases are not supported"}, nil
	case yaml.SequenceNode:
		v := &Value{Kind: List, Items: make([]*Value, len(n.Content))}
		for i, c := range n.Content {
			item, err := r.node(c, IndexPath(path, i), depth+1)
			if err != nil {
				return nil, err
			}
			v.Items[i] = item
		}
		return v, nil
	case yaml.MappingNode:
		v := &Value{Kind: Map}
		seen := make(map[string]bool, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := key(n.Content[i])
			p.Dup = seen[p.Key]
			seen[p.Key] = true
			if p.KeyRule == "" {
				val, err := r.node(n.Content[i+1], KeyPath(path, p.Key), depth+1)
				if err != nil {
					return nil, err
				}
				p.Value = val
			}
			v.Pairs = append(v.Pairs, p)
		}
		return v, nil
	case yaml.ScalarNode:
		return scalar(n), nil
	}
	return &Value{Kind: Bad, Rule: "unsupported YAML node"}, nil
}

// key reads a mapping key: a string (a timestamp is the string written),
// or a Pair whose KeyRule says why not.
func key(k *yaml.Node) Pair {
	if k.Kind != yaml.ScalarNode {
		return Pair{Key: "?", KeyRule: "key must be a string"}
	}
	p := Pair{Key: k.Value}
	switch tag := k.ShortTag(); tag {
	case "!!str", "!!timestamp":
	case "!!merge":
		p.KeyRule = "YAML merge keys are not supported"
	case "!!int", "!!float", "!!bool", "!!null":
		p.KeyRule = fmt.Sprintf("key must be a string (quote %s to make it one)", k.Value)
	default:
		p.KeyRule = fmt.Sprintf("YAML tag %s is not supported", tag)
	}
	return p
}

func scalar(n *yaml.Node) *Value {
	v := &Value{Text: n.Value}
	switch tag := n.ShortTag(); tag {
	case "!!str", "!!timestamp":
		v.Kind = String
	case "!!null":
		v.Kind = Null
	case "!!bool":
		if err := n.Decode(&v.Bool); err != nil {
			return &Value{Kind: Bad, Rule: "must be true or false"}
		}
		v.Kind = Bool
	case "!!int", "!!float":
		var x any
		if err := n.Decode(&x); err != nil {
			return &Value{Kind: Bad, Rule: "must be a number"}
		}
		switch x := x.(type) {
		case int:
			v.Num = strconv.Itoa(x)
		case int64:
			v.Num = strconv.FormatInt(x, 10)
		case uint64:
			v.Num = strconv.FormatUint(x, 10)
		case float64:
			if !math.IsInf(x, 0) && !math.IsNaN(x) {
				v.Num = strconv.FormatFloat(x, 'g', -1, 64)
			}
		default:
			return &Value{Kind: Bad, Rule: "must be a number"}
		}
		v.Kind = Number
	default:
		return &Value{Kind: Bad, Rule: fmt.Sprintf("YAML tag %s is not supported", tag)}
	}
	return v
}
