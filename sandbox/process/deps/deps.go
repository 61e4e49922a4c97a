package deps

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox/jail"
)

// Dep is one package installed in a service's dependency directory.
type Dep struct {
	Language string `json:"language"` // node or python
	Name     string `json:"name"`
	Version  string `json:"version"`
	// Added is true for a package added with Installer.Add (andromeda deps
	// add) rather than declared by the service's package.json or
	// requirements.txt.
	Added bool `json:"added,omitempty"`
}

// A Manager is one language's package manager as the installer drives it:
// the file a service declares its dependencies in, what it may name there,
// the command that installs them into a directory of their own, and how the
// installed packages are listed. NPM and Pip are the two there are.
type Manager struct {
	// Language is the language whose dependencies it installs: it names
	// the service's dependency directory, Dep.Language and the key of
	// Installer.Registries.
	Language string
	// Manifest is the file in the service's directory that declares them.
	Manifest string
	// Subdir is the directory of an install that the service's workers see
	// (Ensure returns it).
	Subdir string
	// Registries are the host:port pairs of its default registry.
	Registries []string
	// Package is the Debian package that provides it, for the error that
	// says it is missing.
	Package string

	tool tool
}

// tool is what the installer needs of one package manager: npm and pip.
type tool interface {
	// read reads and checks what the service in dir declares; allowAny
	// lets any source through.
	read(dir string, added []string, allowAny bool) (declared, error)
	// stage writes an install's files into j.dir and returns where the
	// installer's jail shows j.dir, its working directory there, and its
	// command.
	stage(j job) (target, cwd string, argv []string, err error)
	// list lists the packages of an install's Subdir.
	list(dir string) ([]Dep, error)
	// checkSpec returns the rule a package spec given to Add breaks, or "".
	checkSpec(spec string) string
	// checkFile returns the rule a package file given to Add (inside the
	// local registry) breaks, or "".
	checkFile(path string) string
	// fileName is the package a package file's base name (less its
	// archive suffix) names; specName the name part of a spec.
	fileName(base string) string
	specName(spec string) string
	// normal spells a name the way the registry compares names.
	normal(name string) string
}

// declared is what a service declares for one install, read and checked.
type declared struct {
	src, lock         []byte   // the manifest as the install's key sees it (nil: nothing) and npm's lock
	reqs, constraints []string // pip: the requirement and constraint lines, includes inlined
}

// job is one install being prepared, as a tool's stage sees it.
type job struct {
	decl     declared
	added    []string // as the installer sees them: package files under localRegistry
	dir      string   // the install's directory on the host
	registry string   // a URL, a local directory or "" for the default
	local    bool     // registry is a local directory, shown at localRegistry
	allowAny bool
	argv     []string // the installer's argv prefix
}

// Where an installer's jail shows the service, the local registry and the
// install's directory.
const (
	svcDir        = "/service" // AllowAnySource only: local paths in the manifest are the service's
	localRegistry = "/registry"
	installNode   = "/deps/node"
	installPython = "/deps/python"
)

// Installer installs services' dependencies, each service's in a
// directory of its own, running the package manager in a jail. Set the
// fields before use; safe for concurrent use after.
type Installer struct {
	// Dir holds every service's dependency directories, Dir/<service>/<language>.
	Dir string
	// Jail runs the installers (Ensure, Add and Remove only).
	Jail *jail.Host
	// Registries maps a language to where its packages come from: a
	// registry URL or the absolute path of a local directory. Empty: the
	// manager's default registry.
	Registries map[string]string
	// AllowAnySource lets a service name dependencies by local path, URL or
	// VCS and carry installer options (see SourceError).
	AllowAnySource bool
	// Timeout and Memory bound one install; Scratch is the size of its
	// /tmp (at least 256 MiB) and Files its RLIMIT_NOFILE.
	Timeout time.Duration
	Memory  int64
	Scratch int64
	Files   int
	// Logger receives a line per install.
	Logger *slog.Logger
}

// Service names the service whose dependencies are installed: its name
// (its dependency directory's) and the directory holding its files.
type Service struct{ Name, Dir string }

// Toolchain is what an install needs of its language's toolchain.
type Toolchain struct {
	Exe       string   // the interpreter; its directory leads the installer's PATH
	Mounts    []string // directories outside /usr it needs (jail.Spec.Tools)
	Installer []string // the package manager's argv prefix; empty when missing
	// Version and InstallerVersion are part of an install's key: a new
	// toolchain installs afresh.
	Version, InstallerVersion string
}

// Each service's dependency directory is Dir/<service>/<language>,
// holding:
//
//	added.json      the packages added with Add, as given
//	current         the name of the install in use
//	v-<key>/        one install, named by a digest of what made it (the
//	                service's manifest, the added packages, the registry, the
//	                toolchain): package.json and node_modules/ for Node.js,
//	                requirements.txt and site/ (pip --target) for Python
//
// An install is built beside the current one and switched to when it is
// complete, so running workers keep the one they started with; the two
// newest installs are kept.
const (
	depsAdded   = "added.json"
	depsCurrent = "current"
	installDone = ".complete"
)

// dir returns service's dependency directory for m.
func (in *Installer) dir(service string, m *Manager) (string, error) {
	if service == "" || !filepath.IsLocal(service) || strings.ContainsAny(service, `/\`) || strings.HasPrefix(service, ".") {
		return "", fmt.Errorf("service name %q: not usable as a directory name", service)
	}
	return filepath.Join(in.Dir, service, m.Language), nil
}

// currentInstall returns the directory of the install in use, or "".
func currentInstall(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, depsCurrent))
	name := strings.TrimSpace(string(b))
	if err != nil || name == "" || !filepath.IsLocal(name) {
		return ""
	}
	if _, err := os.Stat(filepath.Join(dir, name, installDone)); err != nil {
		return ""
	}
	return filepath.Join(dir, name)
}

// readAdded returns the packages added to dir with Add.
func readAdded(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, depsAdded))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var added []string
	if err := json.Unmarshal(b, &added); err != nil {
		return nil, fmt.Errorf("%s: %w", depsAdded, err)
	}
	return added, nil
}

// List lists the packages installed in service's dependency directories
// of ms, in their order, each sorted by name: for Node.js the top-level
// packages of its node_modules, for Python the distributions in its target
// directory. A service without dependencies has none. It only reads:
// Installer.Dir is the only field it uses.
func (in *Installer) List(service string, ms ...*Manager) ([]Dep, error) {
	var deps []Dep
	for _, m := range ms {
		dir, err := in.dir(service, m)
		if err != nil {
			return nil, fmt.Errorf("list deps: %w", err)
		}
		cur := currentInstall(dir)
		if cur == "" {
			continue
		}
		added, err := readAdded(dir)
		if err != nil {
			return nil, fmt.Errorf("list deps of %s: %w", service, err)
		}
		found, err := m.tool.list(filepath.Join(cur, m.Subdir))
		if err != nil {
			return nil, fmt.Errorf("list deps of %s: %w", service, err)
		}
		for i := range found {
			found[i].Added = slices.ContainsFunc(added, func(a string) bool { return m.packageName(a) == m.tool.normal(found[i].Name) })
		}
		deps = append(deps, found...)
	}
	return deps, nil
}

// packageName is the name of the package a spec given to Add installs, as
// the registry compares names: "left-pad@1.3.0" → "left-pad",
// "@scope/x@^2" → "@scope/x", "Requests[socks]>=2" → "requests". A path
// (a local tarball, folder or wheel) names the file's package as far as its
// name tells: "/srv/npm/left-pad-1.3.0.tgz" → "left-pad".
func (m *Manager) packageName(spec string) string {
	spec = strings.TrimSpace(spec)
	if strings.ContainsAny(spec, `/\`) && !strings.HasPrefix(spec, "@") {
		base := filepath.Base(spec)
		for _, ext := range []string{".tgz", ".tar.gz", ".whl", ".zip"} {
			base = strings.TrimSuffix(base, ext)
		}
		return m.tool.normal(m.tool.fileName(base))
	}
	return m.tool.normal(m.tool.specName(spec))
}

// Hosts returns the host:port pairs an install from registry may reach:
// the registry URL's, or the manager's default registry's when registry is
// "". A registry that is a local directory needs none.
func (m *Manager) Hosts(registry string) ([]string, error) {
	if registry == "" {
		return m.Registries, nil
	}
	return Hosts(registry)
}

// Hosts returns the host:port pair an install from registry, a registry
// URL or a local directory, may reach: none for a directory.
func Hosts(registry string) ([]string, error) {
	if strings.HasPrefix(registry, "/") {
		return nil, nil
	}
	u, err := url.Parse(registry)
	if err != nil {
		return nil, fmt.Errorf("registry %q: %w", registry, err)
	}
	port := u.Port()
	switch {
	case u.Hostname() == "":
		return nil, fmt.Errorf("registry %q: not an http or https URL with a host", registry)
	case port != "":
	case u.Scheme == "https":
		port = "443"
	case u.Scheme == "http":
		port = "80"
	default:
		return nil, fmt.Errorf("registry %q: not an http or https URL", registry)
	}
	return []string{net.JoinHostPort(strings.ToLower(u.Hostname()), port)}, nil
}

// CheckPackage refuses a package given to Add or Remove that could be read
// as an installer option or break a requirements file.
func CheckPackage(pkg string) error {
	switch {
	case strings.TrimSpace(pkg) == "":
		return errors.New("empty package")
	case strings.HasPrefix(strings.TrimSpace(pkg), "-"):
		return errors.New("a package must not start with '-'")
	case strings.ContainsAny(pkg, "\n\r\x00"):
		return errors.New("a package must be one line")
	}
	return nil
}
