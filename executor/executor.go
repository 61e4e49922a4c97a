// Package executor performs what the node's built-in action kinds ask for
// on the network, safely: HTTP requests only to hosts a service's network
// grant names, never to the node's own listeners, and to loopback,
// link-local and private addresses only when the operator allows it,
// checked on the address actually dialled so that a name resolving
// somewhere else does not slip through. It also says which failures are
// worth another attempt and how long to wait before it.
//
// It imports only the standard library. The ledger that makes executions
// happen once lives in the store; the node drives both.
package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Grant is a service's network grant: any host, or these host:port pairs.
type Grant struct {
	Any   bool
	Hosts []string
}

// Allowed says whether rawURL's host and port are in g, or why not.
func (g Grant) Allowed(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("url: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url: scheme must be http or https")
	}
	hp := HostPort(u)
	if g.Any {
		return nil
	}
	for _, h := range g.Hosts {
		if strings.EqualFold(h, hp) {
			return nil
		}
	}
	if len(g.Hosts) == 0 {
		return fmt.Errorf("url: %s is not allowed: the service's manifest grants no network (capabilities.network)", hp)
	}
	return fmt.Errorf("url: %s is not among the hosts the service's manifest grants (capabilities.network: %s)", hp, strings.Join(g.Hosts, ", "))
}

// HostPort is u's host:port, the scheme's default port when u has none.
func HostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// Guard decides which addresses an execution may dial.
type Guard struct {
	// AllowPrivate lets executions reach loopback, link-local, private
	// (RFC 1918, fc00::/7) and other non-global addresses, also through
	// a NAT64 or 6to4 address embedding one. Default false.
	AllowPrivate bool
	// Own returns the node's own listening addresses (API, hooks, NATS):
	// never dialled, whatever AllowPrivate says. An unspecified host
	// (0.0.0.0, ::) stands for every address of the machine at that
	// port. Asked at each dial, so listeners opened later count.
	Own func() []string
}

// ErrRefused wraps every address the guard refuses: not worth retrying.
var ErrRefused = errors.New("refused")

// Check says whether addr (ip:port, as dialled) may be reached.
func (g Guard) Check(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %s is not an ip:port", ErrRefused, addr)
	}
	ip := ap.Addr().Unmap()
	// A NAT64 or 6to4 address reaches the IPv4 address it embeds, so it
	// is judged as that address too.
	ips := []netip.Addr{ip}
	v4, embeds := embeddedIPv4(ip)
	if embeds {
		ips = append(ips, v4)
	}
	var own []string
	if g.Own != nil {
		own = g.Own()
	}
	for _, own := range own {
		host, port, err := net.SplitHostPort(own)
		if err != nil || port != strconv.Itoa(int(ap.Port())) {
			continue
		}
		oip, err := netip.ParseAddr(host)
		every := host == "" || err == nil && oip.IsUnspecified()
		for _, ip := range ips {
			if every && local(ip) || !every && err == nil && oip.Unmap() == ip {
				return fmt.Errorf("%w: %s is one of the node's own listeners", ErrRefused, addr)
			}
		}
	}
	if g.AllowPrivate {
		return nil
	}
	if embeds && nonGlobal(v4) {
		return fmt.Errorf("%w: %s embeds %s, a loopback, link-local or private address (executors.http.allow_private is off)", ErrRefused, ip, v4)
	}
	if nonGlobal(ip) {
		return fmt.Errorf("%w: %s is a loopback, link-local or private address (executors.http.allow_private is off)", ErrRefused, ip)
	}
	return nil
}

// nonGlobal reports whether ip is loopback, link-local, private or
// otherwise not a public unicast address.
func nonGlobal(ip netip.Addr) bool {
	return !ip.IsGlobalUnicast() || ip.IsPrivate() || cgnat.Contains(ip)
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Prefixes of IPv6 addresses that carry an IPv4 address a translator or
// relay on the path delivers to: NAT64's well-known prefix (RFC 6052) and
// its local-use one (RFC 8215), with the IPv4 address in the last 32
// bits, and 6to4 (RFC 3056), with it in bits 16 to 48.
var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour  = netip.MustParsePrefix("2002::/16")
)

// embeddedIPv4 returns the IPv4 address a NAT64 or 6to4 address carries.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	ip = ip.WithZone("") // a prefix contains no address with a zone
	b := ip.As16()
	switch {
	case nat64.Contains(ip), nat64Local.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// local reports whether ip is an address of this machine.
func local(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == ip {
			return true
		}
	}
	return false
}

// Dialer returns a dialer whose every connection is checked by g after the
// name is resolved and before anything is sent.
func (g Guard) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout: timeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			return g.Check(address)
		},
	}
}

// Client is an HTTP client for executions: it dials through g, follows no
// redirects (a redirect could leave the grant), and gives up after timeout.
func (g Guard) Client(timeout time.Duration) *http.Client {
	tr := &http.Transport{
		DialContext:           g.Dialer(timeout).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Response is what an endpoint answered: its status and the first bytes of
// its body.
type Response struct {
	Status    int
	Body      string
	Truncated bool
}

// Do sends req with client and reads at most maxBody bytes of the answer.
// key, when set, is sent as Idempotency-Key. The error is for a request
// that got no answer; an answer of any status is a Response.
func Do(ctx context.Context, client *http.Client, req *http.Request, key string, maxBody int64) (Response, error) {
	req = req.WithContext(ctx)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	r := Response{Status: resp.StatusCode}
	if int64(len(b)) > maxBody {
		b, r.Truncated = b[:maxBody], true
	}
	r.Body = string(b)
	if err != nil && !r.Truncated {
		return r, fmt.Errorf("read the answer: %w", err)
	}
	return r, nil
}

// Answered describes an answer that was not a success: "the endpoint
// answered 404 Not Found".
func Answered(status int) string {
	return fmt.Sprintf("the endpoint answered %d %s", status, http.StatusText(status))
}

// Transient reports whether an attempt that ended with status (0: no
// answer) and err is worth trying again: no answer at all, 408, 425, 429
// and 5xx. A refused address and any other status are final.
func Transient(status int, err error) bool {
	if err != nil {
		return !errors.Is(err, ErrRefused)
	}
	return status == http.StatusRequestTimeout || status == http.StatusTooEarly ||
		status == http.StatusTooManyRequests || status >= 500
}

// Backoff is the wait before attempt n+1 after n attempts failed: from
// base, doubling, at most max, with full jitter over its upper half so
// that executions that failed together do not retry together.
func Backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

// Key is the idempotency key of one execution: hex of sha256 over the
// service, the run id and the digest of what is executed, 32 characters.
func Key(service, run, digest string) string {
	h := sha256.Sum256([]byte(service + "\x00" + run + "\x00" + digest))
	return hex.EncodeToString(h[:16])
}

// Digest is "sha256:" and the hex digest of b.
func Digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}
