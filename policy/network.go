package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/source"
)

// Network is a network ceiling, written "none", "any", or a list of
// host:port patterns:
//
//	api.example.com:443   that host and port
//	api.example.com:*     that host, any port
//	*.example.com:443     any name below example.com (not example.com itself)
//	*:443                 any host, port 443
//	10.0.0.7:5432, [fd00::1]:80
//
// An empty list is none. Names compare case-insensitively.
type Network struct {
	// Any allows every host and port.
	Any bool
	// Hosts are the patterns allowed when Any is false.
	Hosts []string
}

// None reports whether the ceiling allows no network at all.
func (n Network) None() bool { return !n.Any && len(n.Hosts) == 0 }

// String returns "none", "any" or the patterns joined by commas.
func (n Network) String() string {
	switch {
	case n.Any:
		return "any"
	case len(n.Hosts) == 0:
		return "none"
	}
	return strings.Join(n.Hosts, ",")
}

func (n Network) value() any {
	switch {
	case n.Any:
		return "any"
	case len(n.Hosts) == 0:
		return "none"
	}
	return n.Hosts
}

// MarshalJSON writes "none", "any" or the list of patterns.
func (n Network) MarshalJSON() ([]byte, error) { return json.Marshal(n.value()) }

// MarshalYAML writes none, any or the list of patterns.
func (n Network) MarshalYAML() (any, error) { return n.value(), nil }

// UnmarshalJSON reads "none", "any", null (none) or a list of strings. It
// does not check the patterns; Validate does.
func (n *Network) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	return n.set(v)
}

// UnmarshalYAML reads none, any, null (none) or a list of strings.
func (n *Network) UnmarshalYAML(node *yaml.Node) error {
	var v any
	if err := node.Decode(&v); err != nil {
		return err
	}
	return n.set(v)
}

var errNetwork = errors.New("must be none, any or a list of host:port patterns")

func (n *Network) set(v any) error {
	switch v := v.(type) {
	case nil:
		*n = Network{}
	case string:
		switch v {
		case "none":
			*n = Network{}
		case "any":
			*n = Network{Any: true}
		default:
			return fmt.Errorf("%q: %w", v, errNetwork)
		}
	case []any:
		hosts := make([]string, 0, len(v))
		for _, h := range v {
			s, ok := h.(string)
			if !ok {
				return errNetwork
			}
			hosts = append(hosts, s)
		}
		*n = Network{Hosts: hosts}
	default:
		return errNetwork
	}
	return nil
}

// checkNetworkPattern reports what is wrong with one pattern.
func checkNetworkPattern(p string) error {
	host, port, err := net.SplitHostPort(p)
	if err != nil || host == "" {
		return errors.New("must be host:port, with * for any port or host, like api.example.com:443 or *.example.com:*")
	}
	if port != "*" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q must be a number from 1 to 65535 or *", port)
		}
	}
	if host == "*" || net.ParseIP(host) != nil {
		return nil
	}
	name, wild := strings.CutPrefix(host, "*.")
	if wild && !strings.Contains(name, ".") {
		return errors.New(`a wildcard host needs at least two labels after "*.", like *.example.com`)
	}
	if !source.ValidHostName(name) {
		return fmt.Errorf("host %q is not a DNS name, an IP address or *", host)
	}
	return nil
}

// parseNetPatterns parses the patterns of a Network that Validate has
// accepted.
func parseNetPatterns(hosts []string) []source.HostPattern {
	out := make([]source.HostPattern, 0, len(hosts))
	for _, h := range hosts {
		host, port, _ := net.SplitHostPort(h)
		p := source.HostPattern{Host: strings.ToLower(host), Port: port, AnyPort: port == "*" || port == ""}
		switch {
		case p.Host == "*" || p.Host == "":
			p.Host, p.Suffix = "", true
		case strings.HasPrefix(p.Host, "*."):
			p.Host, p.Suffix = p.Host[1:], true
		}
		if ip := net.ParseIP(p.Host); ip != nil {
			p.Host = ip.String()
		}
		out = append(out, p)
	}
	return out
}

// allows reports whether the requested endpoint host:port (as the manifest
// validates it) matches a pattern.
func allows(pats []source.HostPattern, endpoint string) bool {
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return false
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	for _, p := range pats {
		if p.Match(host, port) {
			return true
		}
	}
	return false
}

// networkOf converts a manifest's network request to the same shape.
func networkOf(n manifest.Network) Network { return Network{Any: n.Any, Hosts: n.Hosts} }
