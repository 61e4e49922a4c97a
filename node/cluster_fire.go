package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// forwardRequest is a manual fire or a webhook request (authenticated by
// the node that took it) forwarded to the node of the cluster that runs
// the service, and fireReply its answer: the run, or the error's kind and
// message as the node that ran it said them.
type forwardRequest struct {
	Service string          `json:"service"`
	Kind    string          `json:"kind"` // manual or http
	Trigger string          `json:"trigger,omitempty"`
	Method  string          `json:"method,omitempty"`
	Path    string          `json:"path,omitempty"`
	Message json.RawMessage `json:"message,omitempty"`
	From    string          `json:"from"`
}

type fireReply struct {
	Run        *api.Run `json:"run,omitempty"`
	Kind       string   `json:"kind,omitempty"`
	Error      string   `json:"error,omitempty"`
	RetryAfter int64    `json:"retry_after_ms,omitempty"`
}

// errorKinds name the error kinds a forwarded answer carries.
var errorKinds = map[string]error{
	"invalid": server.ErrInvalid, "forbidden": server.ErrForbidden, "conflict": server.ErrConflict,
	"unusable": server.ErrUnusable, "busy": server.ErrBusy, "unavailable": server.ErrUnavailable,
	"too-large": server.ErrTooLarge, "not-found": store.ErrNotFound, "refused": server.ErrRefused,
}

// serveForwarded answers the fires the other nodes forward here, each in a
// goroutine of its own (a fire waits for its run).
func (n *Node) serveForwarded() error {
	sub, err := n.bus.Conn.Subscribe(bus.NodeSubject(n.cfg.Name, "fire"), func(m *nats.Msg) {
		go n.answerForwarded(m)
	})
	if err != nil {
		return fmt.Errorf("cluster: take forwarded fires: %w", err)
	}
	n.undo = append(n.undo, sub.Unsubscribe)
	return nil
}

func (n *Node) answerForwarded(m *nats.Msg) {
	var req forwardRequest
	var reply fireReply
	defer func() {
		if p := recover(); p != nil {
			n.log.Error("panic answering a fire another node forwarded", "panic", p, "stack", string(debug.Stack()))
			reply = fireReply{Kind: "internal", Error: fmt.Sprintf("panic in the runner: %v", p)}
		}
		n.respond(m, reply, "fire of "+req.Service)
	}()
	if err := json.Unmarshal(m.Data, &req); err != nil {
		reply = fireReply{Kind: "invalid", Error: "cluster: a forwarded fire that is not JSON: " + err.Error()}
	} else if n.lookup(req.Service) == nil {
		// Not here (any more): never forwarded on, so a fire cannot loop.
		reply = fireReply{Kind: "unavailable", Error: fmt.Sprintf("service %s is not running on node %s, where it was placed: its placement is moving; try again", req.Service, n.cfg.Name), RetryAfter: time.Second.Milliseconds()}
	} else {
		ctx, cancel := context.WithCancel(n.ctx)
		defer cancel()
		var run api.Run
		var err error
		switch req.Kind {
		case trigger.KindHTTP:
			run, err = n.Hook(ctx, server.HookRoute{Service: req.Service, Trigger: req.Trigger, Path: req.Path}, req.Method, req.Message)
		default:
			run, err = n.Fire(ctx, req.Service, req.Message)
		}
		reply = replyOf(run, err)
	}
}

// errorKind names err's kind for an answer to another node (errorKinds),
// "internal" for an error of no kind.
func errorKind(err error) string {
	for name, kind := range errorKinds {
		if errors.Is(err, kind) {
			return name
		}
	}
	return "internal"
}

// replyOf is a fire's outcome as a forwarded answer.
func replyOf(run api.Run, err error) fireReply {
	if err == nil {
		return fireReply{Run: &run}
	}
	r := fireReply{Kind: errorKind(err), Error: err.Error()}
	var se *server.Error
	if errors.As(err, &se) {
		r.RetryAfter = se.RetryAfter.Milliseconds()
		r.Run = se.Run
	}
	return r
}

// forwardFire fires service on the node of the cluster that runs it and
// returns that node's answer; forwarded is false when it is not placed on
// another node (the caller answers as a node alone would).
func (n *Node) forwardFire(ctx context.Context, service string, message json.RawMessage) (run api.Run, forwarded bool, err error) {
	node, ok := n.placedElsewhere(service)
	if !ok {
		return api.Run{}, false, nil
	}
	run, err = n.forwardTo(ctx, node, forwardRequest{Service: service, Kind: trigger.KindManual, Message: message})
	return run, true, err
}

// placedElsewhere is the node of the cluster service is placed on, when it
// is another one.
func (n *Node) placedElsewhere(service string) (string, bool) {
	if n.place == nil {
		return "", false
	}
	pl, ok := n.place.get(service)
	if !ok || pl.Node == n.cfg.Name {
		return "", false
	}
	return pl.Node, true
}

// fitsMessage refuses b, what is sent to node, when it is larger than one
// NATS message may be (the server's max_payload, 8 MiB on the embedded
// one, 1 MiB by default on an external one): NATS would refuse it, and the
// caller would hear only that node did not answer.
func (n *Node) fitsMessage(b []byte, what, node string) error {
	if max := n.bus.Conn.MaxPayload(); max > 0 && int64(len(b)) > max {
		return server.Errorf(server.ErrTooLarge, "the %s is %d bytes on its way to node %s, over the %d bytes one NATS message may carry (the NATS server's max_payload): send it to node %s's API directly, or make it smaller", what, len(b), node, max, node)
	}
	return nil
}

// forwardTo sends req to node and returns its answer.
func (n *Node) forwardTo(ctx context.Context, node string, req forwardRequest) (api.Run, error) {
	service := req.Service
	if c, ok := n.reg.node(node); !ok || c.Health != api.NodeUp {
		return api.Run{}, &server.Error{Kind: server.ErrUnavailable, RetryAfter: retryUnavailable,
			Msg: fmt.Sprintf("service %s is placed on node %s, which is %s: it is being placed again; try again", service, node, c.Health)}
	}
	req.From = n.cfg.Name
	b, _ := json.Marshal(req)
	if err := n.fitsMessage(b, "fire of "+service, node); err != nil {
		return api.Run{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
	}
	m, err := n.bus.Conn.RequestWithContext(ctx, bus.NodeSubject(node, "fire"), b)
	if err != nil {
		return api.Run{}, &server.Error{Kind: server.ErrUnavailable, RetryAfter: retryUnavailable,
			Msg: fmt.Sprintf("service %s runs on node %s, which did not answer the fire: %v", service, node, err)}
	}
	var reply fireReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return api.Run{}, fmt.Errorf("cluster: node %s answered a fire with %q: %w", node, m.Data, err)
	}
	if reply.Kind == "" && reply.Run != nil {
		return *reply.Run, nil
	}
	kind, known := errorKinds[reply.Kind]
	if !known {
		return api.Run{}, fmt.Errorf("node %s: %s", node, reply.Error)
	}
	se := &server.Error{Kind: kind, Msg: reply.Error, Run: reply.Run, RetryAfter: time.Duration(reply.RetryAfter) * time.Millisecond}
	if kind == store.ErrNotFound {
		return api.Run{}, fmt.Errorf("node %s: %s: %w", node, reply.Error, store.ErrNotFound)
	}
	return api.Run{}, se
}

// clusterHooks caches, for a second, which service of the cluster mounts
// each webhook path: a request for a path no service here mounts looks it
// up among the services placed on the other nodes.
type clusterHooks struct {
	mu    sync.Mutex
	at    time.Time
	paths map[string]hookOwner
}

type hookOwner struct {
	service string
	m       *manifest.Service
}

// clusterHookRoute is the route of the http trigger at path of a service
// placed on another node of the cluster, authenticated here and run there.
func (n *Node) clusterHookRoute(path string) (server.HookRoute, bool) {
	o, ok := n.hookOwnerOf(path)
	if !ok {
		return server.HookRoute{}, false
	}
	if _, elsewhere := n.placedElsewhere(o.service); !elsewhere {
		return server.HookRoute{}, false
	}
	return n.hookRouteOf(o.service, o.m, path)
}

// hookOwnerOf is the service of the cluster whose http trigger is at path,
// as the registry held it at most a second ago.
func (n *Node) hookOwnerOf(path string) (hookOwner, bool) {
	if n.place == nil {
		return hookOwner{}, false
	}
	h := &n.hooksSeen
	h.mu.Lock()
	if time.Since(h.at) > time.Second {
		ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
		recs, err := n.store.Services(ctx)
		cancel()
		if err != nil {
			h.mu.Unlock()
			n.log.Warn("cluster: webhook routes of the other nodes not read", logErr, err)
			return hookOwner{}, false
		}
		h.paths, h.at = map[string]hookOwner{}, time.Now()
		for _, rec := range recs {
			m, err := previousManifest(rec)
			if err != nil {
				continue
			}
			for _, t := range m.Triggers {
				if t.Kind == manifest.KindHTTP {
					h.paths[t.Path] = hookOwner{service: rec.Name, m: m}
				}
			}
		}
	}
	o, ok := h.paths[path]
	h.mu.Unlock()
	return o, ok
}

// clusterHookConflict returns an ErrConflict naming another service of the
// cluster that mounts a path of m's http triggers, or nil.
func (n *Node) clusterHookConflict(m *manifest.Service) error {
	for i, t := range m.Triggers {
		if t.Kind != manifest.KindHTTP {
			continue
		}
		if o, ok := n.hookOwnerOf(t.Path); ok && o.service != m.Name {
			return server.Errorf(server.ErrConflict, "%s.path: %s is mounted by service %s of the cluster; a path serves one trigger of one service",
				trigger.Name(i), t.Path, o.service)
		}
		if r, ok := n.clusterFlowHookRoute(t.Path); ok {
			return server.Errorf(server.ErrConflict, "%s.path: %s is mounted by flow %s (%s) of the cluster; a path serves one trigger",
				trigger.Name(i), t.Path, r.Flow, r.Trigger)
		}
	}
	return nil
}

// notPlacedHere refuses a lifecycle command (deploy, start, stop, config
// set) sent to a node of the cluster that does not run the service: it
// would act on a deployment of its own. The error says which node to ask.
func (n *Node) notPlacedHere(service string) error {
	node, ok := n.placedElsewhere(service)
	if !ok {
		return nil
	}
	where := ""
	if c, ok := n.reg.node(node); ok {
		where = " (API " + c.API + ")"
	}
	return server.Errorf(server.ErrConflict, "service %s runs on node %s%s, not on this one (%s): send the command there", service, node, where, n.cfg.Name)
}

// respond answers m, a call of another node, with reply encoded. An answer
// larger than one NATS message may carry would be dropped by the
// connection and the caller left waiting: a fire's run is sent without
// its output and input, as the store keeps a record too large (the run
// is recorded; its record says the rest); any other answer becomes an
// error saying so. A failed answer is logged.
func (n *Node) respond(m *nats.Msg, reply any, what string) {
	b, err := json.Marshal(reply)
	if err != nil {
		b, _ = json.Marshal(nodeReply{Kind: "internal", Error: fmt.Sprintf("encode the answer to the %s: %v", what, err)})
	}
	if max := n.bus.Conn.MaxPayload(); max > 0 && int64(len(b)) > max-1024 {
		size := len(b)
		if fr, ok := reply.(fireReply); ok && fr.Run != nil {
			r := *fr.Run
			r.Output, r.Input, r.Truncated = nil, nil, true
			fr.Run = &r
			b, _ = json.Marshal(fr)
		}
		if int64(len(b)) > max-1024 {
			b, _ = json.Marshal(nodeReply{Kind: "too-large", Error: fmt.Sprintf("node %s's answer to the %s is %d bytes, over the %d bytes one NATS message may carry (the NATS server's max_payload)", n.cfg.Name, what, size, max)})
		}
		n.log.Warn("cluster: an answer to another node too large for one NATS message, sent cut", "what", what, "bytes", size, "max", max)
	}
	if err := m.Respond(b); err != nil {
		n.log.Warn("cluster: an answer to another node not sent", "what", what, logErr, err)
	}
}
