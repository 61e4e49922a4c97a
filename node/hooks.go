package node

// Webhooks (http triggers): the node's side. The server checks a request
// (method, auth, size) against the route HookRoute finds and hands the
// request over as the run's message; Hook runs the service through the
// one run path (invoke), as Fire does, and returns the recorded run. The
// HTTP answer is the server's (server/hooks.go).

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// workHook is the gate's name for a webhook request.
const workHook = "hook"

// HookRoute implements server.HookBackend: the http trigger of a deployed
// service, or of a running flow, mounted at path, with its secret's value
// when the node holds it.
func (n *Node) HookRoute(path string) (server.HookRoute, error) {
	if r, err := n.serviceHookRoute(path); err == nil {
		return r, nil
	}
	if r, ok := n.flowHookRoute(path); ok {
		return r, nil
	}
	if r, ok := n.clusterHookRoute(path); ok {
		return r, nil
	}
	if r, ok := n.clusterFlowHookRoute(path); ok {
		return r, nil
	}
	return server.HookRoute{}, fmt.Errorf("webhook %s: %w", path, store.ErrNotFound)
}

// serviceHookRoute is the http trigger of a deployed service mounted at
// path.
func (n *Node) serviceHookRoute(path string) (server.HookRoute, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for name, d := range n.services {
		if r, ok := n.hookRouteOf(name, d.manifest, path); ok {
			return r, nil
		}
	}
	return server.HookRoute{}, fmt.Errorf("webhook %s: %w", path, store.ErrNotFound)
}

// hookRouteOf is the route of service's http trigger at path in m.
func (n *Node) hookRouteOf(service string, m *manifest.Service, path string) (server.HookRoute, bool) {
	for i, t := range m.Triggers {
		if t.Kind != manifest.KindHTTP || t.Path != path {
			continue
		}
		r := server.HookRoute{Service: service, Trigger: trigger.Name(i), Path: path, Methods: t.Methods, Auth: t.Auth}
		if r.Methods == nil {
			r.Methods = manifest.DefaultHookMethods
		}
		if secret := t.Auth.Secret(); secret != "" {
			if v, ok := n.secrets.value(secret); ok {
				r.Secret = v
			}
		}
		return r, true
	}
	return server.HookRoute{}, false
}

// Hook implements server.HookBackend: run route's service for one request
// and wait for the recorded run. A run is not abandoned when its caller
// hangs up: it finishes and is recorded.
func (n *Node) Hook(ctx context.Context, route server.HookRoute, method string, message json.RawMessage) (api.Run, error) {
	d := n.lookup(route.Service)
	if d == nil {
		if pl, ok := n.placedElsewhere(route.Service); ok {
			// Authenticated here; run where the service runs.
			return n.forwardTo(ctx, pl, forwardRequest{Service: route.Service, Kind: trigger.KindHTTP, Trigger: route.Trigger, Method: method, Path: route.Path, Message: message})
		}
		return api.Run{}, fmt.Errorf("service %s: %w", route.Service, store.ErrNotFound)
	}
	if err := n.gate.admit(workHook, route.Service); err != nil {
		return api.Run{}, &server.Error{Kind: server.ErrUnavailable, Msg: err.Error(), RetryAfter: retryUnavailable}
	}
	ev := trigger.Event{Service: route.Service, Trigger: route.Trigger, Kind: trigger.KindHTTP, At: time.Now().UTC(), Method: method, Path: route.Path, Message: message}
	return n.invokeFor(ctx, d, ev)
}

// hookConflict returns an ErrConflict naming the trigger of another
// service that mounts a path of m's http triggers, or nil. An upgrade of
// a service keeps its own paths.
func (n *Node) hookConflict(m *manifest.Service) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for i, t := range m.Triggers {
		if t.Kind != manifest.KindHTTP {
			continue
		}
		for name, d := range n.services {
			if name == m.Name {
				continue
			}
			for j, o := range d.manifest.Triggers {
				if o.Kind == manifest.KindHTTP && o.Path == t.Path {
					return server.Errorf(server.ErrConflict, "%s.path: %s is mounted by service %s (%s); a path serves one trigger of one service", trigger.Name(i), t.Path, name, trigger.Name(j))
				}
			}
		}
		if r, ok := n.flowHookRoute(t.Path); ok {
			return server.Errorf(server.ErrConflict, "%s.path: %s is mounted by flow %s (%s); a path serves one trigger", trigger.Name(i), t.Path, r.Flow, r.Trigger)
		}
	}
	return nil
}

var _ server.HookBackend = (*Node)(nil)

// listenHooks opens the webhooks' own listener when http.hooks_listen is
// set, and serves them there.
func (n *Node) listenHooks() error {
	addr := n.cfg.HTTP.HooksListen
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s (http.hooks_listen): %w", addr, err)
	}
	n.hooksLn = ln
	handler := server.NewHooks(n, n.cfg.HTTP.serverConfig(server.Config{}), n.log)
	srv := handler.HTTPServer(slog.NewLogLogger(n.log.Handler(), slog.LevelWarn))
	go srv.Serve(handler.Listener(ln))
	n.undo = append(n.undo, func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return nil
}
