package node

import (
	"context"
	"strings"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
)

// depsTarget resolves a process service the caller may manage.
func (n *Node) depsTarget(ctx context.Context, p server.Principal, name string) (sandbox.Spec, error) {
	rec, err := n.owned(ctx, p, name)
	if err != nil {
		return sandbox.Spec{}, err
	}
	if rec.Decision.Driver != string(manifest.DriverProcess) {
		return sandbox.Spec{}, server.Errorf(server.ErrInvalid, "service %s runs on driver %s; dependencies are managed for process services", name, rec.Decision.Driver)
	}
	if n.process == nil {
		return sandbox.Spec{}, server.Errorf(server.ErrConflict, "the process driver is not available on this node")
	}
	m, err := previousManifest(rec)
	if err != nil {
		return sandbox.Spec{}, err
	}
	return n.specFor(rec, m, n.serviceDir(rec)), nil
}

// Deps implements server.Backend.
func (n *Node) Deps(ctx context.Context, p server.Principal, name string) ([]api.Dep, error) {
	if _, err := n.depsTarget(ctx, p, name); err != nil {
		return nil, err
	}
	deps, err := n.process.ListDeps(name)
	if err != nil {
		return nil, err
	}
	out := make([]api.Dep, len(deps))
	for i, d := range deps {
		out[i] = api.Dep{Language: d.Language, Name: d.Name, Version: d.Version, Added: d.Added}
	}
	return out, nil
}

// AddDep implements server.Backend. The package is installed into the
// service's own dependency directory and applies from its next deploy.
func (n *Node) AddDep(ctx context.Context, p server.Principal, name, pkg string) error {
	if err := checkPackage(pkg); err != nil {
		return err
	}
	spec, err := n.depsTarget(ctx, p, name)
	if err != nil {
		return err
	}
	if err := n.process.AddDep(ctx, spec, pkg); err != nil {
		return server.Errorf(server.ErrUnusable, "%v", err)
	}
	n.log.Info("dependency added", logService, name, "package", pkg)
	return nil
}

// RemoveDep implements server.Backend.
func (n *Node) RemoveDep(ctx context.Context, p server.Principal, name, pkg string) error {
	if err := checkPackage(pkg); err != nil {
		return err
	}
	spec, err := n.depsTarget(ctx, p, name)
	if err != nil {
		return err
	}
	if err := n.process.RemoveDep(ctx, spec, pkg); err != nil {
		return server.Errorf(server.ErrUnusable, "%v", err)
	}
	n.log.Info("dependency removed", logService, name, "package", pkg)
	return nil
}

func checkPackage(pkg string) error {
	if strings.TrimSpace(pkg) == "" || len(pkg) > 512 || strings.ContainsAny(pkg, "\x00\n\r") {
		return server.Errorf(server.ErrInvalid, "package: must be a package spec (name, name@version or name==version), at most 512 bytes")
	}
	return nil
}
