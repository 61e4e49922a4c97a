package process

import (
	"context"
	"fmt"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process/deps"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
)

// ensureDeps makes sure spec's dependencies are installed and returns the
// directory to show the workers at l.DepsAt, or "" when it has none.
func (d *Driver) ensureDeps(ctx context.Context, spec sandbox.Spec, l *lang.Language, tc *lang.Toolchain) (string, error) {
	if l.Deps == nil {
		return "", nil
	}
	return d.installer().Ensure(ctx, l.Deps, tc.Toolchain, deps.Service{Name: spec.Service, Dir: spec.Dir})
}

// AddDep installs pkg into spec's dependency directory, on top of what the
// service declares, and records it so that later deploys keep it (andromeda
// deps add NAME PKG). pkg is what npm install or a requirements.txt line
// takes: "left-pad@1.3.0", "requests>=2", or the absolute path of a
// package file inside the language's local registry directory (for Python
// a wheel); anything else (a path elsewhere, a URL, a git spec) is a
// *deps.SourceError unless Config.AllowAnyDepSource. The install runs in a
// sandbox like a worker's; the service's running workers keep the
// install they started with, and its next deploy uses the new one. Safe for
// concurrent use.
func (d *Driver) AddDep(ctx context.Context, spec sandbox.Spec, pkg string) error {
	return d.changeDeps(ctx, spec, pkg, true)
}

// RemoveDep removes a package added with AddDep and reinstalls without it
// (andromeda deps rm NAME PKG); pkg may be the spec given to AddDep or the
// package's name. A package the service itself declares cannot be removed
// here. Safe for concurrent use.
func (d *Driver) RemoveDep(ctx context.Context, spec sandbox.Spec, pkg string) error {
	return d.changeDeps(ctx, spec, pkg, false)
}

func (d *Driver) changeDeps(ctx context.Context, spec sandbox.Spec, pkg string, add bool) error {
	op := "remove dep"
	if add {
		op = "add dep"
	}
	fail := func(err error) error { return fmt.Errorf("%s %s to %s: %w", op, pkg, spec.Service, err) }
	if err := d.ready(); err != nil {
		return fail(err)
	}
	if err := deps.CheckPackage(pkg); err != nil {
		return fail(err)
	}
	l, tc, err := d.toolchain(ctx, spec.Language)
	if err != nil {
		return fail(err)
	}
	if l.Deps == nil {
		return fail(fmt.Errorf("language %q has no dependencies (%s)", l.Name, lang.WithDeps()))
	}
	in, svc := d.installer(), deps.Service{Name: spec.Service, Dir: spec.Dir}
	if add {
		err = in.Add(ctx, l.Deps, tc.Toolchain, svc, pkg)
	} else {
		err = in.Remove(ctx, l.Deps, tc.Toolchain, svc, pkg)
	}
	if err != nil {
		return fail(err)
	}
	return nil
}
