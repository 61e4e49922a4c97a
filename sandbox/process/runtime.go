package process

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process/deps"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
)

// Runtime is a language runtime registered with the driver by descriptor
// (the node's runtimes.d): an executable on the host that speaks the
// runtime protocol and runs the services of its languages, loading each
// one's entry file as the init message names it. Its workers get the same
// sandbox as every other language's; the executable is shown read-only at
// /runtime/<Name> and run with Args.
type Runtime struct {
	Name    string
	Version string
	// Path is the executable's absolute path on the host.
	Path string
	Args []string
	// Languages are the Spec.Language values it serves. Default: Name.
	Languages []string
	// Entry is the usual entry file of its services (the manifest's
	// runtime.entry when it names none); Exts, when set, the extensions
	// an entry must have.
	Entry string
	Exts  []string
	// Modes are the modes it serves; default both.
	Modes []sandbox.Mode
}

// ErrRuntime is returned by AddRuntime for a runtime that cannot be
// registered: a language taken, or an executable that is not one.
var ErrRuntime = errors.New("runtime refused")

// anyLanguage is the context key that lets a deployment use a language
// disabled by the self-test or the node's certification: Certifiable.
type anyLanguage struct{}

// AddRuntime registers rt: from now on Offer lists its languages and
// Deploy runs them, until Disable. A language that is built in (node,
// python, exec) or another runtime's is refused, as is a Path that is not
// an absolute path of a regular file executable by others (workers run as
// an unprivileged user). Safe for concurrent use.
func (d *Driver) AddRuntime(rt Runtime) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: runtime %s: %s", ErrRuntime, rt.Name, fmt.Sprintf(format, args...))
	}
	if !filepath.IsAbs(rt.Path) {
		return fail("path %q: must be absolute", rt.Path)
	}
	fi, err := os.Stat(rt.Path)
	switch {
	case err != nil:
		return fail("path: %v", err)
	case !fi.Mode().IsRegular():
		return fail("path %s: not a regular file", rt.Path)
	case fi.Mode().Perm()&0o001 == 0:
		return fail("path %s has mode %v: it must be executable by others (o+x)", rt.Path, fi.Mode().Perm())
	}
	langs := rt.Languages
	if len(langs) == 0 {
		langs = []string{rt.Name}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, name := range langs {
		if lang.Lookup(name) != nil {
			return fail("language %s is built into the process driver", name)
		}
		if _, ok := d.runtimes[name]; ok {
			return fail("language %s is already served by another runtime", name)
		}
	}
	if d.runtimes == nil {
		d.runtimes = map[string]*lang.Language{}
	}
	exe, args, version := rt.Path, slices.Clone(rt.Args), rt.Version
	for _, name := range langs {
		target := lang.RuntimeDir + "/" + name
		d.runtimes[name] = &lang.Language{
			Name:  name,
			Exts:  slices.Clone(rt.Exts),
			Entry: rt.Entry,
			Exe:   exe,
			Modes: slices.Clone(rt.Modes),
			Argv:  func(_, _ string) []string { return append([]string{target}, args...) },
			Detect: func(context.Context, lang.Tools) *lang.Toolchain {
				return &lang.Toolchain{Lang: name, Toolchain: deps.Toolchain{Version: rt.Name + " " + version}}
			},
		}
	}
	return nil
}

// Disable refuses language from now on, with why (in Offer's notes and
// Deploy's error); Enable lets it run again. The node disables a runtime
// that fails its certification. Safe for concurrent use.
func (d *Driver) Disable(language, why string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.disabled == nil {
		d.disabled = map[string]string{}
	}
	d.disabled[language] = why
}

// Enable undoes Disable.
func (d *Driver) Enable(language string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.disabled, language)
}

// Certifiable returns d as a sandbox.Driver whose Deploy also runs
// languages that are disabled, so that a runtime the node disabled can be
// certified again (andromeda selftest). Close closes d.
func (d *Driver) Certifiable() sandbox.Driver { return certifiable{d} }

type certifiable struct{ *Driver }

func (c certifiable) Deploy(ctx context.Context, spec sandbox.Spec) (sandbox.Deployment, error) {
	return c.Driver.Deploy(context.WithValue(ctx, anyLanguage{}, true), spec)
}

// StartRaw starts a worker of a disabled language too, for the kit's
// protocol checks.
func (c certifiable) StartRaw(ctx context.Context, spec sandbox.Spec) (*sandbox.RawWorker, error) {
	return c.Driver.StartRaw(context.WithValue(ctx, anyLanguage{}, true), spec)
}

// runtime returns the registered runtime's language name, if it is one,
// and its toolchain; ok is false for any other name. A disabled one is
// refused with the reason.
func (d *Driver) runtime(ctx context.Context, name string) (l *lang.Language, tc *lang.Toolchain, ok bool) {
	d.mu.Lock()
	l, ok = d.runtimes[name]
	d.mu.Unlock()
	if !ok {
		return nil, nil, false
	}
	return l, l.Detect(ctx, lang.Tools{}), true
}

// offerRuntimes adds the registered runtimes' languages to o, or a note
// for each disabled one.
func (d *Driver) offerRuntimes(o *sandbox.Offer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(d.runtimes)) {
		l := d.runtimes[name]
		if why := d.disabled[name]; why != "" {
			o.Notes = append(o.Notes, fmt.Sprintf("language %s disabled: %s", name, why))
			continue
		}
		o.Languages[name] = strings.TrimSpace(l.Detect(context.Background(), lang.Tools{}).Version)
	}
}
