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

// YAML reads exactly one YAML document. An empty document (nothing, or
// only comments) reads as a Null with Tag !!null and no Text, like a
// document holding only "---". Syntax errors and a second document are
// errors about the document as a whole. The YAML parser has panicked on
// hostile input in the past; a document is untrusted, so such a panic is
// returned as a syntax error.
func (r Reader[D]) YAML(data []byte) (root *Value, err error) {
	defer func() {
		if p := recover(); p != nil {
			root, err = nil, Errors[D]{{Rule: fmt.Sprintf("yaml syntax: %v", p)}}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &Value{Kind: Null, Tag: "!!null"}, nil
		}
		return nil, r.yamlSyntax(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, Errors[D]{{Rule: fmt.Sprintf("must be one YAML document, found another at line %d", next.Line)}}
	case !errors.Is(err, io.EOF):
		return nil, r.yamlSyntax(err)
	}
	return r.Node(&doc)
}

func (r Reader[D]) yamlSyntax(err error) error {
	return Errors[D]{{Rule: "yaml syntax: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
}

// Node reads a node the YAML package has parsed already, as an
// UnmarshalYAML method receives it. Paths are relative to the node.
func (r Reader[D]) Node(n *yaml.Node) (*Value, error) { return r.node(n, "", 0) }

func (r Reader[D]) node(n *yaml.Node, path string, depth int) (*Value, error) {
	if depth > r.MaxDepth {
		return nil, r.tooDeep(path)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return &Value{Kind: Null, Tag: "!!null"}, nil
		}
		return r.node(n.Content[0], path, depth)
	case yaml.AliasNode:
		return &Value{Kind: Alias}, nil
	case yaml.SequenceNode:
		v := &Value{Kind: List, Tag: n.ShortTag(), Items: make([]*Value, len(n.Content))}
		for i, c := range n.Content {
			item, err := r.node(c, IndexPath(path, i), depth+1)
			if err != nil {
				return nil, err
			}
			v.Items[i] = item
		}
		return v, nil
	case yaml.MappingNode:
		v := &Value{Kind: Map, Tag: n.ShortTag()}
		seen := make(map[string]bool, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := Pair{Key: "?"}
			if k.Kind == yaml.ScalarNode {
				p.Key, p.KeyTag = k.Value, k.ShortTag()
			}
			p.Dup = seen[p.Key]
			seen[p.Key] = true
			if p.KeyTag != "" && p.KeyTag != "!!merge" {
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

func scalar(n *yaml.Node) *Value {
	v := &Value{Text: n.Value, Tag: n.ShortTag()}
	switch v.Tag {
	case "!!str", "!!timestamp":
		v.Kind = String
	case "!!null":
		v.Kind = Null
	case "!!bool":
		if err := n.Decode(&v.Bool); err != nil {
			return &Value{Kind: Bad, Tag: v.Tag, Rule: "must be true or false"}
		}
		v.Kind = Bool
	case "!!int", "!!float":
		var x any
		if err := n.Decode(&x); err != nil {
			return &Value{Kind: Bad, Tag: v.Tag, Rule: "must be a number"}
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
			return &Value{Kind: Bad, Tag: v.Tag, Rule: "must be a number"}
		}
		v.Kind = Number
	default:
		v.Kind = Tagged
	}
	return v
}
