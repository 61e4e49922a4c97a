package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster routes the embedded server into a NATS cluster with the embedded
// servers of other nodes: JetStream is then clustered (its streams and
// buckets replicated by RAFT across the servers), with no consensus of the
// node's own. The zero value leaves the node alone.
type Cluster struct {
	// Name is the cluster's name: every server of it has the same, and a
	// route from a server with another name is refused.
	Name string
	// Listen is the host:port this server takes routes on.
	Listen string
	// Routes are the other servers' route addresses (host:port, or
	// nats-route://host:port); this server's own may be among them. The
	// servers find each other's further routes by themselves.
	Routes []string
	// User and Password authenticate routes: every server of the cluster
	// has the same, and a route without them is refused. Empty: routes are
	// not authenticated (a private network only).
	User, Password string
	// Wait bounds how long Open waits for the cluster's JetStream to have
	// a leader (a majority of its servers up and routed). Default 30s.
	Wait time.Duration
}

// DefaultClusterWait is Cluster.Wait's default.
const DefaultClusterWait = 30 * time.Second

// How routes notice a peer gone without a word (see clusterOptions).
const (
	routePing          = time.Second
	routeWriteDeadline = 3 * time.Second
)

// Enabled reports whether c routes the server into a cluster.
func (c Cluster) Enabled() bool { return c.Name != "" }

// check is c's first problem, naming its field, or nil.
func (c Cluster) check() error {
	if !c.Enabled() {
		if c.Listen != "" || len(c.Routes) > 0 {
			return errors.New("bus: cluster.name: required with cluster.listen or cluster.routes")
		}
		return nil
	}
	if strings.ContainsAny(c.Name, " \t\r\n.*>") {
		return fmt.Errorf("bus: cluster.name: %q has spaces or one of . * >", c.Name)
	}
	if _, _, err := splitHostPort(c.Listen); err != nil {
		return fmt.Errorf("bus: cluster.listen: %w", err)
	}
	for i, r := range c.Routes {
		if _, err := routeURL(r, "", ""); err != nil {
			return fmt.Errorf("bus: cluster.routes[%d]: %w", i, err)
		}
	}
	if (c.User == "") != (c.Password == "") {
		return errors.New("bus: cluster.user and cluster.password: both or neither")
	}
	return nil
}

// splitHostPort splits host:port with a numeric port.
func splitHostPort(hp string) (string, int, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", hp)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("%q: the port is not a number from 0 to 65535", hp)
	}
	return host, p, nil
}

// routeURL is route r as the server dials it, with the credentials.
func routeURL(r, user, password string) (*url.URL, error) {
	hp := strings.TrimPrefix(r, "nats-route://")
	if _, _, err := splitHostPort(hp); err != nil {
		return nil, err
	}
	u := &url.URL{Scheme: "nats-route", Host: hp}
	if user != "" {
		u.User = url.UserPassword(user, password)
	}
	return u, nil
}

// clusterOptions sets o to route the server into cluster c.
func clusterOptions(o *server.Options, c Cluster) error {
	host, port, err := splitHostPort(c.Listen)
	if err != nil {
		return err
	}
	o.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port, Username: c.User, Password: c.Password,
		ConnectRetries: -1, // keep dialling a route that is down: it may come later
		// A route whose peer is cut off (its packets dropped, no reset)
		// is closed after three pings of a second go unanswered, not the
		// client default of two minutes' pings, and a write to it waits
		// at most routeWriteDeadline: meanwhile the cluster's RAFT
		// traffic to that server queues behind it.
		PingInterval: routePing, MaxPingsOut: 3, WriteDeadline: routeWriteDeadline,
	}
	for _, r := range c.Routes {
		u, err := routeURL(r, c.User, c.Password)
		if err != nil {
			return err
		}
		o.Routes = append(o.Routes, u)
	}
	return nil
}

// routeTrouble remembers the last refusal a route met (another cluster
// name, bad credentials), to say why a cluster did not form.
type routeTrouble struct {
	mu   sync.Mutex
	last string
}

// note keeps msg when it is about a refused route.
func (r *routeTrouble) note(msg string) {
	m := strings.ToLower(msg)
	if !strings.Contains(m, "cluster name") && !strings.Contains(m, "authori") && !strings.Contains(m, "authenticat") && !strings.Contains(m, "route") {
		return
	}
	r.mu.Lock()
	r.last = msg
	r.mu.Unlock()
}

func (r *routeTrouble) get() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// waitClusterReady waits until the clustered JetStream answers (a meta
// leader is elected), up to the cluster's Wait; the error says why not.
func (b *Bus) waitClusterReady(ctx context.Context) error {
	wait := b.cfg.Cluster.Wait
	if wait <= 0 {
		wait = DefaultClusterWait
	}
	deadline := time.Now().Add(wait)
	var err error
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = b.JS.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	why := "fewer than a majority of its servers are up and routed to this one"
	if t := b.routes.get(); t != "" {
		why = "a route was refused: " + t
	}
	return fmt.Errorf("bus: cluster %q: JetStream has no leader after %v (%s; this server has %d routes up): %w",
		b.cfg.Cluster.Name, wait, why, b.srv.NumRoutes(), err)
}
