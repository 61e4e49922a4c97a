package process

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Dep is one package installed in a service's dependency directory.
type Dep struct {
	Language string `json:"language"` // node or python
	Name     string `json:"name"`
	Version  string `json:"version"`
	// Added is true for a package added with AddDep (andromeda deps add)
	// rather than declared by the service's package.json or requirements.txt.
	Added bool `json:"added,omitempty"`
}

// The manifests a service declares its dependencies in.
const (
	nodeManifest   = "package.json"
	nodeLock       = "package-lock.json"
	pythonManifest = "requirements.txt"
)

// Each service's dependency directory is WorkDir/deps/<service>/<language>,
// holding:
//
//	added.json      the packages added with AddDep, as given
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
	nodeSubdir  = "node_modules"
	pySubdir    = "site"
	installDone = ".complete"
)

// depsDir returns service's dependency directory for lang.
func (d *Driver) depsDir(service, lang string) (string, error) {
	if service == "" || !filepath.IsLocal(service) || strings.ContainsAny(service, `/\`) || strings.HasPrefix(service, ".") {
		return "", fmt.Errorf("service name %q: not usable as a directory name", service)
	}
	if lang != LangNode && lang != LangPython {
		return "", fmt.Errorf("language %q has no dependencies (node, python)", lang)
	}
	return filepath.Join(d.cfg.WorkDir, "deps", service, lang), nil
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

// readAdded returns the packages added to dir with AddDep.
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

// ListDeps lists the packages installed in service's dependency directory
// for both languages, sorted by language and name: for Node.js the
// top-level packages of its node_modules, for Python the distributions in
// its target directory. A service without dependencies has none. Safe for
// concurrent use; it only reads.
func (d *Driver) ListDeps(service string) ([]Dep, error) {
	var deps []Dep
	for _, lang := range []string{LangNode, LangPython} {
		dir, err := d.depsDir(service, lang)
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
		var found []Dep
		if lang == LangNode {
			found, err = listNodeModules(filepath.Join(cur, nodeSubdir))
		} else {
			found, err = listPythonSite(filepath.Join(cur, pySubdir))
		}
		if err != nil {
			return nil, fmt.Errorf("list deps of %s: %w", service, err)
		}
		for i := range found {
			found[i].Added = slices.ContainsFunc(added, func(a string) bool { return packageName(lang, a) == normalName(lang, found[i].Name) })
		}
		deps = append(deps, found...)
	}
	return deps, nil
}

// listNodeModules reads the name and version of every top-level package in
// a node_modules directory (scoped packages included).
func listNodeModules(dir string) ([]Dep, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pkgs []string
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Name(), "."):
		case strings.HasPrefix(e.Name(), "@"):
			scoped, _ := os.ReadDir(filepath.Join(dir, e.Name()))
			for _, s := range scoped {
				pkgs = append(pkgs, filepath.Join(e.Name(), s.Name()))
			}
		default:
			pkgs = append(pkgs, e.Name())
		}
	}
	var deps []Dep
	for _, p := range pkgs {
		b, err := os.ReadFile(filepath.Join(dir, p, "package.json"))
		if err != nil {
			continue
		}
		var meta struct{ Name, Version string }
		if json.Unmarshal(b, &meta) != nil || meta.Name == "" {
			continue
		}
		deps = append(deps, Dep{Language: LangNode, Name: meta.Name, Version: meta.Version})
	}
	slices.SortFunc(deps, func(a, b Dep) int { return strings.Compare(a.Name, b.Name) })
	return deps, nil
}

// listPythonSite reads the name and version of every distribution
// installed in a pip --target directory.
func listPythonSite(dir string) ([]Dep, error) {
	metas, err := filepath.Glob(filepath.Join(dir, "*.dist-info", "METADATA"))
	if err != nil {
		return nil, err
	}
	var deps []Dep
	for _, m := range metas {
		f, err := os.Open(m)
		if err != nil {
			continue
		}
		dep := Dep{Language: LangPython}
		sc := bufio.NewScanner(f)
		for sc.Scan() && (dep.Name == "" || dep.Version == "") {
			line := sc.Text()
			if line == "" {
				break // end of the headers
			}
			if v, ok := strings.CutPrefix(line, "Name: "); ok {
				dep.Name = strings.TrimSpace(v)
			} else if v, ok := strings.CutPrefix(line, "Version: "); ok {
				dep.Version = strings.TrimSpace(v)
			}
		}
		f.Close()
		if dep.Name != "" {
			deps = append(deps, dep)
		}
	}
	slices.SortFunc(deps, func(a, b Dep) int {
		return strings.Compare(normalName(LangPython, a.Name), normalName(LangPython, b.Name))
	})
	return deps, nil
}

// packageName is the name of the package a spec given to AddDep installs,
// as normalName spells it: "left-pad@1.3.0" → "left-pad",
// "@scope/x@^2" → "@scope/x", "Requests[socks]>=2" → "requests". A path
// (a local tarball, folder or wheel) names the file's package as far as its
// name tells: "/srv/npm/left-pad-1.3.0.tgz" → "left-pad".
func packageName(lang, spec string) string {
	spec = strings.TrimSpace(spec)
	if strings.ContainsAny(spec, `/\`) && !strings.HasPrefix(spec, "@") {
		base := filepath.Base(spec)
		for _, ext := range []string{".tgz", ".tar.gz", ".whl", ".zip"} {
			base = strings.TrimSuffix(base, ext)
		}
		if lang == LangPython {
			base, _, _ = strings.Cut(base, "-") // wheel: name-version-...
		} else if i := strings.LastIndex(base, "-"); i > 0 && i+1 < len(base) && base[i+1] >= '0' && base[i+1] <= '9' {
			base = base[:i] // npm pack: name-version.tgz
		}
		return normalName(lang, base)
	}
	if lang == LangNode {
		name := spec
		if i := strings.LastIndex(spec, "@"); i > 0 {
			name = spec[:i]
		}
		return normalName(lang, name)
	}
	if i := strings.IndexAny(spec, "<>=!~[; @("); i > 0 {
		spec = spec[:i]
	}
	return normalName(lang, spec)
}

// normalName spells a package name the way its registry compares names:
// Python's are case-insensitive with -, _ and . equivalent (PEP 503).
func normalName(lang, name string) string {
	if lang != LangPython {
		return name
	}
	name = strings.ToLower(name)
	return strings.NewReplacer("_", "-", ".", "-").Replace(name)
}
