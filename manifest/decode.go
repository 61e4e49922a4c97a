package manifest

import (
	"errors"
	"reflect"
	"strings"

	"github.com/andromeda-runner/andromeda/strictdoc"
)

// A manifest is decoded by package strictdoc, the decoder every document
// shares, with the hooks below for the types that are not plain data: the
// values written with units keep the author's notation and are judged by
// Validate, so that one pass reports every problem, and the network is a
// word or a list.

// maxDepth bounds the nesting of a manifest, config and inputs included.
const maxDepth = 64

// document names the manifest in errors about it as a whole.
type document struct{}

// Name returns "manifest".
func (document) Name() string { return "manifest" }

// strict decodes manifests.
var strict = strictdoc.Decoder[document]{
	MaxSize:  MaxSize,
	MaxDepth: maxDepth,
	Hooks: []strictdoc.Hook{
		strictdoc.Type(strictdoc.Scalar(func(s string, b *Bytes) error { b.setRaw(s); return nil })),
		strictdoc.Type(strictdoc.Scalar(func(s string, c *CPU) error { c.setRaw(s); return nil })),
		strictdoc.Type(strictdoc.Scalar(func(s string, d *Duration) error { d.setRaw(s); return nil })),
		strictdoc.Type(decodeNetwork),
		strictdoc.Type(decodeAuth),
	},
}

func decodeNetwork(c *strictdoc.Cursor, v *strictdoc.Value, n *Network) {
	switch v.Kind {
	case strictdoc.String:
		n.setString(strings.TrimSpace(v.Text))
	case strictdoc.List:
		var hosts []string
		c.Decode(v, &hosts)
		*n = Network{Hosts: hosts}
	default:
		c.Fail(networkRule)
	}
}

// TriggerHooks returns the hooks with which another document that declares
// triggers (a flow) decodes a trigger's types as a manifest does: a
// Duration kept as written and an auth as a word or a mapping, both
// judged by CheckTriggers.
func TriggerHooks() []strictdoc.Hook {
	return []strictdoc.Hook{
		strictdoc.Type(strictdoc.Scalar(func(s string, d *Duration) error { d.setRaw(s); return nil })),
		strictdoc.Type(decodeAuth),
	}
}

// UnitHooks returns the hooks with which another document built on the
// manifest's unit types (a policy, the node config) decodes them: a Bytes,
// CPU or Duration is a string or a number, judged at once, with the rule
// Validate gives here ("must be a size like 64Mi, 1Gi, 512k or a number
// of bytes").
func UnitHooks() []strictdoc.Hook {
	return []strictdoc.Hook{
		strictdoc.Type(strictdoc.Scalar(func(s string, b *Bytes) (err error) {
			*b, err = ParseBytes(s)
			return ruleOf(err, bytesRule)
		})),
		strictdoc.Type(strictdoc.Scalar(func(s string, c *CPU) (err error) {
			*c, err = ParseCPU(s)
			return ruleOf(err, cpuRule)
		})),
		strictdoc.Type(strictdoc.Scalar(func(s string, d *Duration) (err error) {
			*d, err = ParseDuration(s)
			return ruleOf(err, durationRule)
		})),
	}
}

func ruleOf(err error, rule string) error {
	if err != nil {
		return errors.New(rule)
	}
	return nil
}

// The two steps of Parse (manifest.go): readYAML and readJSON read the
// source, and refuse a root that is not a mapping with the decoder's own
// words; decoder.decode decodes the tree.

func readYAML(data []byte) (*strictdoc.Value, error) { return read(strictdoc.YAML, data) }

func readJSON(data []byte) (*strictdoc.Value, error) { return read(strictdoc.JSON, data) }

func read(f strictdoc.Format, data []byte) (*strictdoc.Value, error) {
	root, err := strict.Read(f, data)
	if err == nil && root.Kind != strictdoc.Map {
		err = strict.DecodeValue(root, new(Service))
	}
	return root, err
}

// decoder collects the problems of decoding a manifest's tree.
type decoder struct{ errs Errors }

// decode decodes the tree v of a whole manifest onto out, a Service; path
// is "".
func (d *decoder) decode(v *strictdoc.Value, out reflect.Value, path string) {
	if err := strict.DecodeValue(v, out.Addr().Interface()); err != nil {
		d.errs = append(d.errs, err.(Errors)...)
	}
}
