package deps

import (
	"fmt"
	"path/filepath"
)

// What a service may name as a dependency. An installer must never execute
// service-supplied code and must fetch only from the registry the node
// configured, so a requirements.txt, a package.json (with its lock) and
// `deps add` may name packages only by registry name with a version
// specifier: pip builds a local project, a VCS checkout or an sdist URL with
// the project's own build backend (even with --only-binary=:all:, pip runs
// the backend of a local directory), and npm packs, clones or fetches what a
// file:, link:, git or URL spec names. Installer.AllowAnySource lifts these
// rules for the service's own files; includes (-r, -c) stay confined to the
// service directory either way, since the node reads them.

// SourceError is a dependency the installer refuses to install: a local
// path, URL, VCS spec or installer option in a service's requirements.txt,
// package.json or package-lock.json, or in a package given to Add.
// Ensure, Add and Remove return it wrapped; errors.As finds it.
type SourceError struct {
	File string // the file as the service names it (requirements.txt, base/common.txt, package.json), or "deps add"
	Line int    // 1-based line of the offending entry; 0 when not known
	Rule string // what is not allowed, and what is
}

func (e *SourceError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Rule)
	}
	return e.File + ": " + e.Rule
}

// The rules a SourceError names.
const (
	rulePySource = "local paths, URLs and VCS requirements are not allowed (only name[extras] version-specifier lines)"
	rulePyEdit   = "editable requirements (-e) are not allowed (only name[extras] version-specifier lines)"
	ruleNPMSpec  = "local paths, URLs and git specs are not allowed (only registry versions, ranges, tags and npm: aliases)"
	ruleAddPath  = "a package file must be inside the node's local registry directory"
)

// archiveSuffixes are the file names pip (is_archive_file) and npm
// (npm-package-arg) read as a package file rather than a name.
var archiveSuffixes = []string{".whl", ".zip", ".tar", ".tgz", ".tbz", ".txz", ".tlz", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.lz", ".tar.lzma"}

// checkAdded checks a package given to Add: a registry name with an
// optional version spec ("left-pad@^1", "@scope/x@2", "requests[socks]>=2"),
// or a package file inside the local registry directory registry ("" when
// the registry is not local; for Python a wheel, which installs without
// running anything). allowAny lets any spec through.
func checkAdded(m *Manager, spec, registry string, allowAny bool) error {
	if allowAny {
		return nil
	}
	bad := func(rule string) error {
		return &SourceError{File: "deps add", Rule: fmt.Sprintf("%s: %s", spec, rule)}
	}
	if filepath.IsAbs(spec) {
		rel, err := filepath.Rel(registry, spec)
		if registry == "" || err != nil || !filepath.IsLocal(rel) {
			return bad(ruleAddPath)
		}
		if rule := m.tool.checkFile(spec); rule != "" {
			return bad(rule)
		}
		return nil
	}
	if rule := m.tool.checkSpec(spec); rule != "" {
		return bad(rule)
	}
	return nil
}
