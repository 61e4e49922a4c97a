package source

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// A HostPattern matches endpoints by host and port. It is what an
// allowed_sources entry means here, and what a network pattern of the
// policy means there; each grammar has its own parser.
type HostPattern struct {
	// Host is a host name in lowercase, without a trailing dot, or an IP
	// address without brackets.
	Host string
	// Suffix makes Host match every host that ends in it: ".example.com"
	// (written *.example.com) matches the names below example.com but not
	// example.com itself, and "" matches every host.
	Suffix bool
	// Port is the port, as a decimal number.
	Port string
	// AnyPort matches every port; Port is then ignored.
	AnyPort bool
}

// Match reports whether an endpoint matches p. host must be written as
// Host is: lowercase, without brackets or a trailing dot.
func (p HostPattern) Match(host, port string) bool {
	if !p.AnyPort && port != p.Port {
		return false
	}
	if p.Suffix {
		return strings.HasSuffix(host, p.Host)
	}
	return host == p.Host
}

// HostAllowed reports whether the URL host hostport (host or host:port, as
// in url.URL.Host) matches an entry of allowed; see the package
// documentation.
func HostAllowed(hostport string, allowed []string) bool {
	host, port := splitHostPort(hostport)
	if host == "" {
		return false
	}
	for _, entry := range allowed {
		if allowedPattern(entry).Match(host, port) {
			return true
		}
	}
	return false
}

// allowedPattern parses an allowed_sources entry; see the package
// documentation.
func allowedPattern(entry string) HostPattern {
	host, port := splitHostPort(entry)
	p := HostPattern{Host: host, Port: port}
	if suffix, ok := strings.CutPrefix(host, "*."); ok {
		p.Host, p.Suffix = "."+suffix, true
	}
	return p
}

// splitHostPort returns the lowercased host without a trailing dot or
// brackets, and the port, "443" when there is none.
func splitHostPort(s string) (host, port string) {
	host, port = s, "443"
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	return host, port
}

// CheckPattern reports whether p is a valid allowed_sources entry: a host
// name or IP address, or "*." and a name with at least one dot, optionally
// followed by ":port" (1-65535).
func CheckPattern(p string) error {
	if p == "" {
		return errors.New("must not be empty")
	}
	if strings.ContainsAny(p, "/@?# \t") {
		return errors.New("must be a host name with an optional :port, not a URL")
	}
	host, port := p, ""
	if h, pt, err := net.SplitHostPort(p); err == nil {
		host, port = h, pt
	} else if strings.Count(p, ":") == 1 {
		return fmt.Errorf("bad port: %v", err)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q must be a number from 1 to 65535", port)
		}
	}
	if net.ParseIP(strings.Trim(host, "[]")) != nil {
		return nil
	}
	name, wild := strings.CutPrefix(host, "*.")
	if wild && !strings.Contains(name, ".") {
		return errors.New("a wildcard must have at least two labels after \"*.\", like *.example.com")
	}
	if !ValidHostName(strings.TrimSuffix(name, ".")) {
		return errors.New("must be a host name like github.com or *.example.com")
	}
	return nil
}

// ValidHostName reports whether s is a DNS name: at most 253 bytes of
// dot-separated labels, each 1 to 63 letters, digits, hyphens or
// underscores, neither starting nor ending with a hyphen. It allows no
// trailing dot.
func ValidHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
