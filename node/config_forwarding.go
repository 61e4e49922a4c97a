package node

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/manifest"
)

// ForwardingConfig says how the node forwards what its policy will not
// run to the peers policy.peers lists (in the policy's order), and how
// those peers know this node. A peer is another Andromeda node, alone or
// in a cluster of its own; this node submits to it as a submitter of its
// own with the token the peer's operator gave it.
//
//	forwarding:
//	  url: https://a.example:7070
//	  peers:
//	    - {url: https://b.example:7070, token: "<b's submitter token for a>"}
//	  timeout: 60s
type ForwardingConfig struct {
	// URL is this node's base URL as its peers know it: what it puts on a
	// forwarded service's path and what a receipt forwarded to it must
	// name. Default http:// and the API's listen address.
	URL string `json:"url,omitempty" yaml:"url"`
	// Peers are the tokens for the peers policy.peers names, by URL. A
	// peer of the policy without one is skipped, saying so.
	Peers []PeerConfig `json:"peers,omitempty" yaml:"peers"`
	// Timeout bounds one forward: the peer's admission, deploy and any
	// forward of its own. Default 60s.
	Timeout manifest.Duration `json:"timeout,omitempty" yaml:"timeout"`
}

// PeerConfig is one peer's credentials.
type PeerConfig struct {
	// URL is the peer's base URL, as policy.peers names it.
	URL string `json:"url" yaml:"url"`
	// Token is a submitter token the peer's operator made for this node.
	Token string `json:"token" yaml:"token"`
}

// Validate checks every field, naming its key.
func (c ForwardingConfig) Validate() error {
	var errs []error
	bad := func(key, rule string) { errs = append(errs, fmt.Errorf("forwarding.%s: %s", key, rule)) }
	if c.URL != "" && checkBaseURL(c.URL) != "" {
		bad("url", checkBaseURL(c.URL))
	}
	seen := map[string]bool{}
	for i, p := range c.Peers {
		if why := checkBaseURL(p.URL); why != "" {
			bad(fmt.Sprintf("peers[%d].url", i), why)
		}
		if seen[p.URL] {
			bad(fmt.Sprintf("peers[%d].url", i), "listed twice")
		}
		seen[p.URL] = true
		if strings.TrimSpace(p.Token) == "" {
			bad(fmt.Sprintf("peers[%d].token", i), "must not be empty: the peer's submitter token for this node")
		}
	}
	if c.Timeout.Std() < 0 || c.Timeout.Std() > time.Hour {
		bad("timeout", "must be between 0 (the default, 60s) and 1h")
	}
	return errors.Join(errs...)
}

// checkBaseURL says what is wrong with u as a node's base URL, or "".
func checkBaseURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || (p.Path != "" && p.Path != "/") || p.RawQuery != "" || p.Fragment != "" {
		return "must be an http or https base URL (scheme and host, no path)"
	}
	return ""
}

// timeout is the forward timeout in force.
func (c ForwardingConfig) timeout() time.Duration {
	if c.Timeout.Std() > 0 {
		return c.Timeout.Std()
	}
	return time.Minute
}

// token is the token for peer, or "".
func (c ForwardingConfig) token(peer string) string {
	for _, p := range c.Peers {
		if p.URL == peer {
			return p.Token
		}
	}
	return ""
}
