package policy

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// MaxSize is the largest policy document, in bytes, that Parse accepts.
const MaxSize = 1 << 20

// MaxDepth bounds the nesting of a policy document; a document holding a
// policy (the node config) allows it as much below the policy's key.
const MaxDepth = 32

// document names the policy in errors about it as a whole.
type document struct{}

// Name returns "policy".
func (document) Name() string { return "policy" }

// strict decodes policies: by package strictdoc's rules, the same as every
// document's, with Hooks.
var strict = strictdoc.Decoder[document]{MaxSize: MaxSize, MaxDepth: MaxDepth, AllowEmpty: true, Hooks: Hooks()}

// Hooks returns the package strictdoc hooks that decode a policy's types
// that are not plain data: the network ceiling, origins (a list or a
// mapping), and sizes, CPU shares and
// durations (manifest.UnitHooks), judged as they are read. A document
// holding a policy, the node config, decodes it with them.
func Hooks() []strictdoc.Hook {
	return append(manifest.UnitHooks(), strictdoc.Type(decodeNetwork), strictdoc.Type(decodeOrigins))
}

func decodeNetwork(c *strictdoc.Cursor, v *strictdoc.Value, n *Network) {
	switch v.Kind {
	case strictdoc.String:
		switch v.Text {
		case "none":
			*n = Network{}
		case "any":
			*n = Network{Any: true}
		default:
			c.Fail(errNetwork.Error())
		}
	case strictdoc.List:
		var hosts []string
		c.Decode(v, &hosts)
		*n = Network{Hosts: hosts}
	default:
		c.Fail(errNetwork.Error())
	}
}

// FieldError is one problem with a policy, at the path of the key it
// concerns: "trusted_hubs[1].key", "limits.memory.max", "rules[2]
// (no-weekend-jobs)". An empty Path is the policy as a whole, and its Error
// reads "policy: rule".
type FieldError = strictdoc.FieldError[document]

// Errors is every problem Parse, Validate or Compile found, in document
// order. It is a type of its own: errors.As tells it from a manifest's
// Errors.
type Errors = strictdoc.Errors[document]

// Load reads a policy file in the format its extension names (.yaml or
// .yml, .json, .toml); a file with another extension is read as Parse
// reads it: JSON when its first non-space byte is '{', YAML otherwise.
// Errors are prefixed with the file name.
func Load(name string) (Policy, error) {
	f, err := os.Open(name)
	if err != nil {
		return Policy{}, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", name, err)
	}
	var p Policy
	if format, ok := strictdoc.FormatOf(name); ok {
		p, err = ParseFormat(data, format)
	} else {
		p, err = Parse(data)
	}
	if err != nil {
		return Policy{}, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// ParseFormat is Parse for a document in a known format: strictdoc.YAML,
// JSON or TOML. An empty YAML or TOML document is the defaults.
func ParseFormat(data []byte, format strictdoc.Format) (Policy, error) {
	p := DefaultPolicy()
	if err := strict.Decode(format, data, &p); err != nil {
		return Policy{}, err
	}
	p.Normalize()
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Parse decodes a policy document over DefaultPolicy, normalizes and
// validates it. The document is the policy mapping itself (the content of
// the node config's policy key), in JSON when its first non-space byte is
// '{' (or YAML when such a document is not JSON), YAML otherwise; an empty
// YAML document is the defaults. Decoding is strict, by package
// strictdoc's rules: an unknown or duplicate key, null, a value of the
// wrong type, a YAML alias, merge key or second document, trailing JSON
// data, more than MaxSize bytes or nesting deeper than MaxDepth levels is
// an error naming the path. The error is an Errors listing every problem
// found.
func Parse(data []byte) (Policy, error) {
	p := DefaultPolicy()
	if err := p.decode(data); err != nil {
		return Policy{}, err
	}
	p.Normalize()
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// decode reads data and decodes it onto p.
func (p *Policy) decode(data []byte) error {
	var (
		root *strictdoc.Value
		err  error
	)
	if t := bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))); len(t) > 0 && t[0] == '{' {
		// JSON, or a YAML flow mapping: JSON's errors are the clearer
		// ones for a document that is neither.
		root, err = strict.Read(strictdoc.JSON, data)
		if err != nil {
			if y, yerr := strict.Read(strictdoc.YAML, data); yerr == nil {
				root, err = y, nil
			}
		}
	} else {
		root, err = strict.Read(strictdoc.YAML, data)
	}
	if err != nil {
		return err
	}
	return strict.DecodeValue(root, p)
}

// UnmarshalYAML decodes a policy strictly on top of p's current value, so
// that a document whose defaults hold DefaultPolicy keeps them for keys it
// leaves out; then it normalizes. It does not validate: call Validate (or
// Compile). Errors are an Errors with paths relative to the policy.
func (p *Policy) UnmarshalYAML(n *yaml.Node) error {
	if err := strict.DecodeYAMLNode(n, p); err != nil {
		return err
	}
	p.Normalize()
	return nil
}

// UnmarshalJSON is UnmarshalYAML for JSON.
func (p *Policy) UnmarshalJSON(data []byte) error {
	if err := strict.Decode(strictdoc.JSON, data, p); err != nil {
		return err
	}
	p.Normalize()
	return nil
}
