package node

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/docker"
	"github.com/andromeda-runner/andromeda/sandbox/process"
)

// NodeID is the node's stable id: its node key's public half,
// "ed25519:<base64>", as usage records and the offer name it. The docker
// driver labels every container with it (andromeda.node), so that a
// restarted node finds what an earlier run of it left.
func (n *Node) NodeID() string { return n.key.Public().String() }

// startDocker builds the docker driver from the docker section of the
// config and the policy's registries.docker (the only prefixes it pulls
// from), self-tests it like every driver (an engine that does not answer
// disables it, with the reason in the offer and the log), and then removes
// the containers an earlier run of this node left behind: a node killed
// without a chance to stop its containers finds them at its next start.
// pc is the process driver's configuration: the docker driver's pools use
// its protocol and pool settings.
func (n *Node) startDocker(ctx context.Context, pc process.Config) {
	c := n.cfg.Docker
	if !c.Enabled {
		n.log.Info("docker driver left out: docker.enabled is false")
		return
	}
	scratch, _ := parseBytes(c.Scratch) // checked by Validate
	pc.WorkDir = filepath.Join(n.cfg.Data, "docker")
	d := docker.New(docker.Config{
		Host:  c.Host,
		TLSCA: c.TLS.CA, TLSCert: c.TLS.Cert, TLSKey: c.TLS.Key,
		Node:       n.NodeID(),
		Images:     c.Images.Map(),
		Registries: n.Policy().DockerPrefixes(),
		User:       c.User,
		Scratch:    scratch,
		Process:    pc,
		Logger:     n.log.With("driver", "docker"),
	})
	// Containers an earlier run left are removed once the self-test
	// passed, before the driver counts as tested: nothing deploys on it
	// until then.
	n.addDriver(ctx, d, func(ctx context.Context) { n.reapDocker(ctx, d) })
}

// reapDocker removes the containers an earlier run of this node left.
func (n *Node) reapDocker(ctx context.Context, d *docker.Driver) {
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	removed, err := d.Reap(rctx)
	if len(removed) > 0 {
		what := fmt.Sprintf("%d containers", len(removed))
		if len(removed) == 1 {
			what = "1 container"
		}
		n.log.Info("removed "+what+" left by an earlier run of this node", "driver", "docker", "containers", removed)
	}
	if err != nil {
		n.log.Warn("docker driver: could not remove every container left by an earlier run of this node", logErr, err)
	}
}

// placementOf is where dep runs, for inspect, when its driver says
// (sandbox.Placed); nil otherwise.
func placementOf(dep sandbox.Deployment) *api.Placement {
	pl, ok := dep.(sandbox.Placed)
	if !ok {
		return nil
	}
	p := pl.Placement()
	return &api.Placement{Kind: p.Kind, Containers: slices.Clone(p.Containers), Image: p.Image, Reason: p.Reason}
}
