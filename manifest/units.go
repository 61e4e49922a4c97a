package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Values written with units keep the author's notation (String, and what
// MarshalJSON and MarshalYAML emit) next to the typed value the node uses.
// Parse accepts any notation and leaves judging it to Validate, so that one
// pass reports every problem; UnmarshalJSON and UnmarshalYAML, for callers
// that decode a Service with encoding/json or yaml directly, reject a bad
// notation at once. The zero value means "not set".

// errRange marks a value that is well-formed but too large to represent.
var errRange = errors.New("out of range")

// Bytes is an amount of memory: a whole number of bytes (67108864), or a
// whole number with a unit, k, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti
// (powers of 1024), as in Kubernetes: 64Mi, 1Gi, 512k. Units are
// case-sensitive.
type Bytes struct {
	raw string
	n   int64
}

// ParseBytes parses a size; see Bytes.
func ParseBytes(s string) (Bytes, error) {
	n, err := parseBytes(s)
	if err != nil {
		return Bytes{}, fmt.Errorf("size %q: %s", s, bytesRule)
	}
	return Bytes{raw: s, n: n}, nil
}

func mustBytes(s string) Bytes { return must(ParseBytes(s)) }

const bytesRule = "must be a size like 64Mi, 1Gi, 512k or a number of bytes"

var byteUnits = map[string]int64{
	"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
}

func parseBytes(s string) (int64, error) {
	digits := strings.TrimPrefix(s, "-")
	neg := len(digits) < len(s)
	i := 0
	for i < len(digits) && digits[i] >= '0' && digits[i] <= '9' {
		i++
	}
	mult, ok := byteUnits[digits[i:]]
	if i == 0 || !ok {
		return 0, errors.New(bytesRule)
	}
	n, err := strconv.ParseInt(digits[:i], 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, errRange
	}
	if neg {
		return -n * mult, nil
	}
	return n * mult, nil
}

// Int64 returns the size in bytes; 0 when unset or malformed.
func (b Bytes) Int64() int64 { return b.n }

// String returns the size as written.
func (b Bytes) String() string { return b.raw }

// IsZero reports whether the size is unset.
func (b Bytes) IsZero() bool { return b.raw == "" }

func (b *Bytes) setRaw(raw string) {
	n, _ := parseBytes(raw)
	*b = Bytes{raw: raw, n: n}
}

// MarshalJSON emits the size as written: a JSON number for a plain number
// of bytes, a string otherwise.
func (b Bytes) MarshalJSON() ([]byte, error) { return marshalRaw(b.raw) }

// UnmarshalJSON accepts a number of bytes or a string; see Bytes.
func (b *Bytes) UnmarshalJSON(data []byte) error { return unmarshalRawJSON(data, b, ParseBytes) }

// MarshalYAML emits the size as written.
func (b Bytes) MarshalYAML() (any, error) { return b.raw, nil }

// UnmarshalYAML accepts a number of bytes or a string; see Bytes.
func (b *Bytes) UnmarshalYAML(n *yaml.Node) error { return unmarshalRawYAML(n, b, ParseBytes) }

// CPU is a CPU share in cores: a decimal number of cores (0.5, 2) or a
// whole number of millicores (500m).
type CPU struct {
	raw   string
	cores float64
}

// ParseCPU parses a CPU share; see CPU.
func ParseCPU(s string) (CPU, error) {
	c, err := parseCPU(s)
	if err != nil {
		return CPU{}, fmt.Errorf("cpu %q: %s", s, cpuRule)
	}
	return CPU{raw: s, cores: c}, nil
}

func mustCPU(s string) CPU { return must(ParseCPU(s)) }

const cpuRule = "must be a number of cores like 0.5 or millicores like 500m"

var (
	coresRE = regexp.MustCompile(`^-?([0-9]+(\.[0-9]+)?|\.[0-9]+)$`)
	milliRE = regexp.MustCompile(`^-?[0-9]+m$`)
)

func parseCPU(s string) (float64, error) {
	div := 1.0
	switch {
	case coresRE.MatchString(s):
	case milliRE.MatchString(s):
		s, div = s[:len(s)-1], 1000
	default:
		return 0, errors.New(cpuRule)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, errRange
	}
	return f / div, nil
}

// Cores returns the share in cores; 0 when unset or malformed.
func (c CPU) Cores() float64 { return c.cores }

// String returns the share as written.
func (c CPU) String() string { return c.raw }

// IsZero reports whether the share is unset.
func (c CPU) IsZero() bool { return c.raw == "" }

func (c *CPU) setRaw(raw string) {
	f, _ := parseCPU(raw)
	*c = CPU{raw: raw, cores: f}
}

// MarshalJSON emits the share as written: a JSON number for a plain number
// of cores, a string otherwise.
func (c CPU) MarshalJSON() ([]byte, error) { return marshalRaw(c.raw) }

// UnmarshalJSON accepts a number or a string; see CPU.
func (c *CPU) UnmarshalJSON(data []byte) error { return unmarshalRawJSON(data, c, ParseCPU) }

// MarshalYAML emits the share as written.
func (c CPU) MarshalYAML() (any, error) { return c.raw, nil }

// UnmarshalYAML accepts a number or a string; see CPU.
func (c *CPU) UnmarshalYAML(n *yaml.Node) error { return unmarshalRawYAML(n, c, ParseCPU) }

// Duration is a span of time in Go's notation: 500ms, 5s, 1m30s, 2h.
// A bare number has no unit and is an error.
type Duration struct {
	raw string
	d   time.Duration
}

// ParseDuration parses a duration; see Duration.
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return Duration{}, fmt.Errorf("duration %q: %s", s, durationRule)
	}
	return Duration{raw: s, d: d}, nil
}

func mustDuration(s string) Duration { return must(ParseDuration(s)) }

const durationRule = "must be a duration like 500ms, 30s or 1h30m"

// Std returns the duration; 0 when unset or malformed.
func (d Duration) Std() time.Duration { return d.d }

// String returns the duration as written.
func (d Duration) String() string { return d.raw }

// IsZero reports whether the duration is unset.
func (d Duration) IsZero() bool { return d.raw == "" }

func (d *Duration) setRaw(raw string) {
	v, _ := time.ParseDuration(raw)
	*d = Duration{raw: raw, d: v}
}

// MarshalJSON emits the duration as written, as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.raw) }

// UnmarshalJSON accepts a string; see Duration.
func (d *Duration) UnmarshalJSON(data []byte) error { return unmarshalRawJSON(data, d, ParseDuration) }

// MarshalYAML emits the duration as written.
func (d Duration) MarshalYAML() (any, error) { return d.raw, nil }

// UnmarshalYAML accepts a string; see Duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return unmarshalRawYAML(n, d, ParseDuration) }

// Network is the network a service may reach: none (the zero value), any,
// or a list of host:port endpoints. It is written as the string "none" or
// "any", or as a list of strings.
type Network struct {
	// Any grants every host and port.
	Any bool
	// Hosts are the host:port endpoints granted when Any is false: a DNS
	// name or an IP address (IPv6 in brackets) and a port from 1 to 65535.
	Hosts []string
	// bad is a string other than none or any, kept for Validate to report.
	bad string
}

// None reports whether no network is granted.
func (n Network) None() bool { return !n.Any && len(n.Hosts) == 0 && n.bad == "" }

// String returns "none", "any" or the hosts joined by commas.
func (n Network) String() string {
	switch {
	case n.bad != "":
		return n.bad
	case n.Any:
		return "any"
	case len(n.Hosts) > 0:
		return strings.Join(n.Hosts, ",")
	}
	return "none"
}

const networkRule = "must be none, any or a list of host:port"

func (n *Network) setString(s string) {
	switch s {
	case "none":
		*n = Network{}
	case "any":
		*n = Network{Any: true}
	default:
		*n = Network{bad: s}
	}
}

func (n Network) marshal() any {
	switch {
	case n.bad != "":
		return n.bad
	case n.Any:
		return "any"
	case len(n.Hosts) > 0:
		return n.Hosts
	}
	return "none"
}

// MarshalJSON emits "none", "any" or the list of hosts.
func (n Network) MarshalJSON() ([]byte, error) { return json.Marshal(n.marshal()) }

// UnmarshalJSON accepts "none", "any", null (none) or a list of strings.
func (n *Network) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	return n.setAny(v)
}

// MarshalYAML emits none, any or the list of hosts.
func (n Network) MarshalYAML() (any, error) { return n.marshal(), nil }

// UnmarshalYAML accepts none, any, null (none) or a list of strings.
func (n *Network) UnmarshalYAML(node *yaml.Node) error {
	var v any
	if err := node.Decode(&v); err != nil {
		return err
	}
	return n.setAny(v)
}

func (n *Network) setAny(v any) error {
	switch v := v.(type) {
	case nil:
		*n = Network{}
		return nil
	case string:
		n.setString(v)
		if n.bad != "" {
			*n = Network{}
			return fmt.Errorf("network %q: %s", v, networkRule)
		}
		return nil
	case []any:
		hosts := make([]string, len(v))
		for i, h := range v {
			s, ok := h.(string)
			if !ok {
				return fmt.Errorf("network: %s", networkRule)
			}
			hosts[i] = s
		}
		*n = Network{Hosts: hosts}
		return nil
	}
	return fmt.Errorf("network: %s", networkRule)
}

// plainNumberRE matches what is emitted as a JSON number rather than a
// string: a valid JSON number without exponent.
var plainNumberRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

func marshalRaw(raw string) ([]byte, error) {
	if plainNumberRE.MatchString(raw) {
		return []byte(raw), nil
	}
	return json.Marshal(raw)
}

// unmarshalRawJSON parses a JSON string, or the literal of a JSON number,
// into *dst; null leaves *dst alone. When parse fails, *dst is what it
// returned with its error: the zero value.
func unmarshalRawJSON[T any](data []byte, dst *T, parse func(string) (T, error)) error {
	var v any
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return err
	}
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		return parseInto(dst, parse, strings.TrimSpace(v))
	case json.Number:
		return parseInto(dst, parse, v.String())
	}
	return fmt.Errorf("%s is not a string or a number", data)
}

// unmarshalRawYAML parses the text of a scalar that is a string or a
// number into *dst, as unmarshalRawJSON does; null leaves *dst alone.
func unmarshalRawYAML[T any](n *yaml.Node, dst *T, parse func(string) (T, error)) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: must be a string or a number", n.Line)
	}
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!str", "!!int", "!!float":
		return parseInto(dst, parse, strings.TrimSpace(n.Value))
	}
	return fmt.Errorf("line %d: must be a string or a number", n.Line)
}

// must returns v, for defaults known to parse; it panics on err.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func parseInto[T any](dst *T, parse func(string) (T, error), raw string) error {
	v, err := parse(raw)
	*dst = v
	return err
}
