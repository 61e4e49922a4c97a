package jail

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"time"
)

// A command run with Spec.Egress (an installer) reaches those hosts, and
// nothing else, through an egress proxy the node runs for the length of the
// run:
//
//	npm / pip ──HTTP proxy──▶ 127.0.0.1:3128 (forwarder, inside the
//	jail's own network namespace, where only lo exists)
//	──unix socket bind-mounted into the jail──▶ egressProxy (in the node)
//	──TCP, resolved on the host──▶ the registry's host:port
//
// The proxy answers CONNECT (https registries) and absolute-form requests
// (http registries) for the allowed host:port pairs and 403 for anything
// else, so the command has neither routes nor a resolver of its own and
// cannot reach the node's API, the host's other services or any other host.
// This is the jailer pattern (Firecracker's, Nomad's): an empty network
// namespace plus one audited way out. An offline install from a directory
// the node fills would give the same guarantee but needs the node to
// resolve npm's and pip's dependency graphs itself; the proxy leaves that to
// the installers.

// egressProxy is an HTTP proxy that lets through only CONNECT tunnels and
// plain-HTTP requests to a fixed set of host:port pairs and answers 403 to
// everything else. It serves one listener (a unix socket) until Close;
// Close also ends the tunnels and requests in flight. Safe for concurrent
// use.
type egressProxy struct {
	allow  map[string]bool // host:port, host lowercased
	log    *slog.Logger
	srv    *http.Server
	rp     *httputil.ReverseProxy
	dialer net.Dialer

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // hijacked and upstream connections of tunnels
	closed bool
}

// newEgressProxy returns a proxy that allows the host:port pairs in allow.
func newEgressProxy(allow []string, log *slog.Logger) *egressProxy {
	p := &egressProxy{allow: map[string]bool{}, log: log, conns: map[net.Conn]struct{}{}, dialer: net.Dialer{Timeout: 30 * time.Second}}
	for _, a := range allow {
		p.allow[strings.ToLower(a)] = true
	}
	p.rp = &httputil.ReverseProxy{
		// The request is already in absolute form: forward it as it is.
		Rewrite: func(*httputil.ProxyRequest) {},
		Transport: &http.Transport{
			Proxy:                 nil, // never the node's own proxy settings
			DialContext:           p.dial,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: 2 * time.Minute,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "egress proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
	return p
}

// serve serves ln until Close.
func (p *egressProxy) serve(ln net.Listener) {
	if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		p.log.Warn("egress proxy stopped", "error", err.Error())
	}
}

// allowed reports whether hostport ("host:port") is one the proxy lets
// through.
func (p *egressProxy) allowed(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	return err == nil && p.allow[net.JoinHostPort(strings.ToLower(host), port)]
}

// dial connects to an allowed address, resolving its name on the host.
func (p *egressProxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if !p.allowed(addr) {
		return nil, fmt.Errorf("%s is not a registry of this install", addr)
	}
	return p.dialer.DialContext(ctx, "tcp", addr)
}

func (p *egressProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.connect(w, r)
		return
	}
	if r.URL.Scheme != "http" || r.URL.Host == "" {
		p.refuse(w, r, r.URL.String())
		return
	}
	target := r.URL.Host
	if r.URL.Port() == "" {
		target = net.JoinHostPort(r.URL.Hostname(), "80")
	}
	if !p.allowed(target) {
		p.refuse(w, r, target)
		return
	}
	r.Header.Del("Proxy-Authorization")
	r.Header.Del("Proxy-Connection")
	p.rp.ServeHTTP(w, r)
}

func (p *egressProxy) refuse(w http.ResponseWriter, r *http.Request, target string) {
	p.log.Warn("egress proxy: refused", "method", r.Method, "target", target)
	hosts := slices.Sorted(maps.Keys(p.allow))
	http.Error(w, fmt.Sprintf("egress proxy: %s is not a registry of this install (allowed: %s)", target, strings.Join(hosts, ", ")), http.StatusForbidden)
}

// connect opens a tunnel to an allowed host:port.
func (p *egressProxy) connect(w http.ResponseWriter, r *http.Request) {
	target := r.Host
	if !p.allowed(target) {
		p.refuse(w, r, target)
		return
	}
	up, err := p.dial(r.Context(), "tcp", target)
	if err != nil {
		http.Error(w, "egress proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "egress proxy: cannot tunnel", http.StatusInternalServerError)
		return
	}
	down, buf, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	if !p.track(up, down) {
		return
	}
	defer p.untrack(up, down)
	if _, err := down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}
	splice(up, down, buf.Reader)
}

// track records a tunnel's connections for Close; it closes them and
// returns false when the proxy is already closed.
func (p *egressProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *egressProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

// Close stops the proxy: its listener, its requests and its tunnels.
// Safe to call more than once.
func (p *egressProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.srv.Close()
	if t, ok := p.rp.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// splice copies a and b into each other until both directions end; what
// the client sent before the tunnel opened (buffered) goes first.
func splice(up, down net.Conn, buffered *bufio.Reader) {
	var wg sync.WaitGroup
	wg.Go(func() {
		var src io.Reader = down
		if buffered != nil && buffered.Buffered() > 0 {
			src = io.MultiReader(io.LimitReader(buffered, int64(buffered.Buffered())), down)
		}
		_, _ = io.Copy(up, src)
		closeWrite(up)
	})
	_, _ = io.Copy(down, up)
	closeWrite(down)
	wg.Wait()
}

// closeWrite half-closes c when it can, so the other side sees EOF.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
