package deps

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/andromeda-runner/andromeda/sandbox/jail"
)

// NPM installs a Node.js service's package.json (and package-lock.json)
// into node_modules with npm, which runs no scripts.
var NPM = &Manager{
	Language:   "node",
	Manifest:   nodeManifest,
	Subdir:     "node_modules",
	Registries: []string{"registry.npmjs.org:443"},
	Package:    "npm",
	tool:       npm{},
}

// The files a Node.js service declares its dependencies in.
const (
	nodeManifest = "package.json"
	nodeLock     = "package-lock.json"
)

type npm struct{}

func (npm) read(dir string, added []string, allowAny bool) (declared, error) {
	var d declared
	src, err := os.ReadFile(filepath.Join(dir, nodeManifest))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return d, err
	}
	if len(added) == 0 && !declaresDeps(src) {
		src = nil // a package.json without dependencies (say, only "type")
	}
	if len(src) > 0 {
		d.lock, _ = os.ReadFile(filepath.Join(dir, nodeLock))
	}
	if len(src) > 0 && !allowAny {
		if err := checkPackageJSON(src); err != nil {
			return d, err
		}
		if len(d.lock) > 0 {
			if err := checkPackageLock(d.lock); err != nil {
				return d, err
			}
		}
	}
	d.src = src
	return d, nil
}

func (npm) stage(j job) (target, cwd string, argv []string, err error) {
	pkgJSON, rewrote, err := rewritePackageJSON(j.decl.src)
	if err != nil {
		return "", "", nil, fmt.Errorf("%s: %w", nodeManifest, err)
	}
	if err := os.WriteFile(filepath.Join(j.dir, nodeManifest), pkgJSON, 0o644); err != nil {
		return "", "", nil, err
	}
	if len(j.decl.lock) > 0 && !rewrote {
		if err := os.WriteFile(filepath.Join(j.dir, nodeLock), j.decl.lock, 0o644); err != nil {
			return "", "", nil, err
		}
	}
	argv = append(slices.Clone(j.argv), "install", "--no-audit", "--no-fund", "--ignore-scripts",
		"--omit=dev", "--install-links", "--no-update-notifier", "--loglevel=warn", "--cache", jail.Scratch+"/.npm")
	switch {
	case j.local:
		argv = append(argv, "--offline")
	default:
		registry := j.registry
		if registry == "" {
			registry = "https://registry.npmjs.org/"
		}
		argv = append(argv, "--registry", registry, "--proxy", jail.EgressProxy, "--https-proxy", jail.EgressProxy)
	}
	if len(j.added) > 0 {
		argv = append(argv, "--save")
		argv = append(argv, j.added...)
	}
	return installNode, installNode, argv, nil
}

func (npm) list(dir string) ([]Dep, error) { return listNodeModules(dir) }

func (npm) checkSpec(spec string) string {
	name, rng := spec, ""
	if i := strings.LastIndex(spec, "@"); i > 0 {
		name, rng = spec[:i], spec[i+1:]
	}
	if !npmNameRe.MatchString(name) {
		return ruleNPMSpec
	}
	return checkNPMSpec(rng)
}

func (npm) checkFile(string) string { return "" }

// fileName reads npm pack's name-version.tgz.
func (npm) fileName(base string) string {
	if i := strings.LastIndex(base, "-"); i > 0 && i+1 < len(base) && base[i+1] >= '0' && base[i+1] <= '9' {
		return base[:i]
	}
	return base
}

func (npm) specName(spec string) string {
	if i := strings.LastIndex(spec, "@"); i > 0 {
		return spec[:i]
	}
	return spec
}

func (npm) normal(name string) string { return name }

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
		deps = append(deps, Dep{Language: "node", Name: meta.Name, Version: meta.Version})
	}
	slices.SortFunc(deps, func(a, b Dep) int { return strings.Compare(a.Name, b.Name) })
	return deps, nil
}

// declaresDeps reports whether package.json src declares dependencies npm
// would install (devDependencies are not installed).
func declaresDeps(src []byte) bool {
	var pkg struct {
		Dependencies, OptionalDependencies map[string]any
	}
	if json.Unmarshal(src, &pkg) != nil {
		return len(src) > 0 // let npm say what is wrong with it
	}
	return len(pkg.Dependencies)+len(pkg.OptionalDependencies) > 0
}

// rewritePackageJSON returns package.json with every relative "file:"
// dependency made absolute under /service, where the installer sees the
// service, and whether it changed anything.
func rewritePackageJSON(src []byte) ([]byte, bool, error) {
	if len(src) == 0 {
		return []byte("{}\n"), false, nil
	}
	var pkg map[string]any
	if err := json.Unmarshal(src, &pkg); err != nil {
		return nil, false, err
	}
	rewrote := false
	for _, field := range []string{"dependencies", "optionalDependencies"} {
		deps, _ := pkg[field].(map[string]any)
		for name, v := range deps {
			s, _ := v.(string)
			if rel, ok := strings.CutPrefix(s, "file:"); ok && !path.IsAbs(rel) {
				deps[name] = "file:" + path.Join(svcDir, rel)
				rewrote = true
			}
		}
	}
	out, err := json.MarshalIndent(pkg, "", "  ")
	return append(out, '\n'), rewrote, err
}

// npmNameRe is a registry package name, optionally scoped.
var npmNameRe = regexp.MustCompile(`^(?:@[a-z0-9~-][a-z0-9._~-]*/)?[a-z0-9~-][a-z0-9._~-]*$`)

// npmRangeRe is a version, range or dist-tag: what npm resolves against the
// registry. Anything with '/', ':', '#' or '@' is a path, URL, git spec or
// alias to npm (npm-package-arg), a leading '.' a path.
var npmRangeRe = regexp.MustCompile(`^[A-Za-z0-9.*^~<>=|\s_+-]*$`)

// checkNPMSpec returns the rule a package.json dependency spec breaks, or
// "".
func checkNPMSpec(spec string) string {
	spec = strings.TrimSpace(spec)
	if alias, ok := strings.CutPrefix(spec, "npm:"); ok {
		name, rng := alias, ""
		if i := strings.LastIndex(alias, "@"); i > 0 {
			name, rng = alias[:i], alias[i+1:]
		}
		if !npmNameRe.MatchString(name) {
			return ruleNPMSpec
		}
		spec = rng
	}
	if !npmRangeRe.MatchString(spec) || strings.HasPrefix(spec, ".") {
		return ruleNPMSpec
	}
	lower := strings.ToLower(spec)
	for _, s := range archiveSuffixes {
		if strings.HasSuffix(lower, s) {
			return ruleNPMSpec
		}
	}
	return ""
}

// checkPackageJSON checks the dependency specs of a package.json (every
// kind npm resolves: dependencies, optional, dev and peer dependencies,
// overrides) and refuses workspaces, whose packages are local directories.
func checkPackageJSON(src []byte) error {
	return walkJSON(src, func(p []string, v string, line int) error {
		bad := func(rule string) error { return &SourceError{File: nodeManifest, Line: line, Rule: rule} }
		switch {
		case len(p) == 0:
		case p[0] == "workspaces":
			return bad("workspaces are not allowed (their packages are local directories)")
		case len(p) == 2 && (p[0] == "dependencies" || p[0] == "optionalDependencies" || p[0] == "devDependencies" || p[0] == "peerDependencies"):
			if rule := checkNPMSpec(v); rule != "" {
				return bad(fmt.Sprintf("%s[%q] = %q: %s", p[0], p[1], v, rule))
			}
		case len(p) >= 2 && p[0] == "overrides":
			if rule := checkNPMSpec(v); rule != "" && !strings.HasPrefix(v, "$") {
				return bad(fmt.Sprintf("overrides %q = %q: %s", strings.Join(p[1:], " > "), v, rule))
			}
		}
		return nil
	})
}

// checkPackageLock checks a package-lock.json (lockfile versions 1 to 3):
// every package must come from a registry URL, never a link, a local path
// or a git checkout.
func checkPackageLock(src []byte) error {
	return walkJSON(src, func(p []string, v string, line int) error {
		bad := func(rule string) error {
			return &SourceError{File: nodeLock, Line: line, Rule: fmt.Sprintf("%s = %q: %s", jsonPath(p), v, rule)}
		}
		n := len(p)
		switch {
		case n == 0:
		case p[n-1] == "resolved" && n >= 3 && (p[0] == "packages" || p[0] == "dependencies"):
			if !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
				return bad("only registry URLs are allowed")
			}
		case p[n-1] == "link" && p[0] == "packages" && v == "true":
			return bad("links to local directories are not allowed")
		case p[0] == "dependencies" && n >= 3 && (p[n-1] == "version" || p[n-2] == "requires"):
			if rule := checkNPMSpec(v); rule != "" {
				return bad(rule)
			}
		case n >= 4 && p[0] == "packages" && (p[n-2] == "dependencies" || p[n-2] == "optionalDependencies" || p[n-2] == "devDependencies" || p[n-2] == "peerDependencies"):
			if rule := checkNPMSpec(v); rule != "" {
				return bad(rule)
			}
		}
		return nil
	})
}

func jsonPath(p []string) string {
	var b strings.Builder
	for i, s := range p {
		if i == 0 {
			b.WriteString(s)
		} else {
			fmt.Fprintf(&b, "[%q]", s)
		}
	}
	return b.String()
}

// walkJSON calls fn for every scalar value of the JSON document src with
// its path of object keys and array indexes, its text (a string's value;
// true, false, numbers and null as written) and the line it ends on. It
// stops at fn's first error.
func walkJSON(src []byte, fn func(path []string, v string, line int) error) error {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	lineAt := func(off int64) int { return 1 + bytes.Count(src[:min(int(off), len(src))], []byte("\n")) }
	type frame struct {
		object bool
		key    string // the key whose value comes next (objects)
		index  int    // the next index (arrays)
		keyNow bool   // objects: the next token is a key
	}
	var stack []frame
	var path []string
	// value is called for each value; it returns the path to report.
	enter := func() {
		if len(stack) == 0 {
			return
		}
		top := &stack[len(stack)-1]
		if top.object {
			path = append(path, top.key)
			top.keyNow = true
		} else {
			path = append(path, strconv.Itoa(top.index))
			top.index++
		}
	}
	leave := func() {
		if len(stack) > 0 {
			path = path[:len(path)-1]
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				enter()
				stack = append(stack, frame{object: t == '{', keyNow: t == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
				leave()
			}
			continue
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].keyNow {
			stack[n-1].key, stack[n-1].keyNow = tok.(string), false
			continue
		}
		enter()
		var v string
		switch t := tok.(type) {
		case string:
			v = t
		case json.Number:
			v = t.String()
		case bool:
			v = strconv.FormatBool(t)
		case nil:
			v = "null"
		}
		if err := fn(path, v, lineAt(dec.InputOffset())); err != nil {
			return err
		}
		leave()
	}
}
