package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// Lifecycle commands about a service (deploy, start, stop, config set)
// act on its deployment, which lives on the node it is placed on. Sent to
// another node of the cluster, they are forwarded there over NATS
// (andromeda.node.<name>.service), answered as that node's API would for
// the same caller, and never forwarded again.

// serviceCall is a lifecycle command forwarded to the service's node,
// made by caller (authenticated by the node that took the request).
type serviceCall struct {
	Op      string            `json:"op"` // deploy, start, stop, config, cancel
	Caller  string            `json:"caller"`
	Role    string            `json:"role"`
	Service string            `json:"service"`
	Run     string            `json:"run,omitempty"` // cancel: the run in flight
	GraceMS int64             `json:"grace_ms,omitempty"`
	Patch   json.RawMessage   `json:"patch,omitempty"`
	Options api.SubmitOptions `json:"options,omitzero"`
	By      string            `json:"by"`
}

// serveServiceCalls answers the lifecycle commands the other nodes
// forward here, each in a goroutine of its own (a stop waits for runs).
func (n *Node) serveServiceCalls() error {
	sub, err := n.bus.Conn.Subscribe(bus.NodeSubject(n.cfg.Name, "service"), func(m *nats.Msg) { go n.answerServiceCall(m) })
	if err != nil {
		return fmt.Errorf("cluster: take service calls: %w", err)
	}
	n.undo = append(n.undo, sub.Unsubscribe)
	return nil
}

// forwardService sends call, made by p, to the node service call.Service
// is placed on when that is another node, and returns its answer; done is
// false when the command is to be answered here (a node alone, a service
// placed here or nowhere, a call forwarded here). A service whose node is
// not up is refused naming that node: it is taken over once the node is
// judged lost, and the command can be sent again then.
func forwardService[T any](ctx context.Context, n *Node, p server.Principal, call serviceCall) (out T, done bool, err error) {
	if n.place == nil || isForwarded(ctx) {
		return out, false, nil
	}
	node, ok := n.placedElsewhere(call.Service)
	if !ok {
		return out, false, nil
	}
	if c, ok := n.reg.node(node); !ok || c.Health != api.NodeUp {
		health := "not in the registry"
		if ok {
			health = string(c.Health)
		}
		return out, true, &server.Error{Kind: server.ErrUnavailable, RetryAfter: retryUnavailable,
			Msg: fmt.Sprintf("service %s runs on node %s, which is %s: it goes to another node once that one is judged lost; send the command again then", call.Service, node, health)}
	}
	call.Caller, call.Role, call.By = p.Name, p.Role, n.cfg.Name
	out, err = askNode[T](ctx, n, node, "service", "service "+call.Service, call)
	return out, true, err
}

// answerServiceCall answers a lifecycle command another node forwarded
// here, as this node's API would for the caller it names.
func (n *Node) answerServiceCall(m *nats.Msg) {
	n.answerCall(m, "service", func() (any, error) {
		var c serviceCall
		if err := json.Unmarshal(m.Data, &c); err != nil || c.Caller == "" || c.Service == "" && c.Run == "" {
			return nil, server.Errorf(server.ErrInvalid, "cluster: a forwarded service call that is not JSON or names no caller, service or run: %v", err)
		}
		ctx, cancel := context.WithCancel(context.WithValue(n.ctx, forwardedKey{}, c.By))
		defer cancel()
		p := server.Principal{Name: c.Caller, Role: c.Role}
		switch c.Op {
		case "deploy":
			return n.DeployService(ctx, p, c.Service)
		case "start":
			return n.StartService(ctx, p, c.Service)
		case "stop":
			return n.StopService(ctx, p, c.Service, time.Duration(c.GraceMS)*time.Millisecond)
		case "config":
			return n.SetConfig(ctx, p, c.Service, c.Patch, c.Options)
		case "cancel":
			return n.Cancel(ctx, p, c.Run)
		}
		return nil, server.Errorf(server.ErrInvalid, "cluster: a forwarded service call of unknown op %q", c.Op)
	})
}

// cancelElsewhere asks the other live nodes of the cluster, one after
// another, to cancel run id for p: a run in flight is known only to the
// node running it, and nothing else says which node that is until the
// run is recorded. done is false when no node runs it (or on a node
// alone, or for a call forwarded here): the caller answers as for a run
// not in flight.
func (n *Node) cancelElsewhere(ctx context.Context, p server.Principal, id string) (res api.CancelResult, done bool, err error) {
	if n.reg == nil || isForwarded(ctx) {
		return res, false, nil
	}
	for name, c := range n.reg.view() {
		if name == n.cfg.Name || c.Health != api.NodeUp {
			continue
		}
		call := serviceCall{Op: "cancel", Run: id, Caller: p.Name, Role: p.Role, By: n.cfg.Name}
		res, err = askNode[api.CancelResult](ctx, n, name, "service", "run "+id, call)
		if errors.Is(err, store.ErrNotFound) {
			continue // not in flight there, and not recorded yet
		}
		return res, true, err
	}
	return res, false, nil
}
