package process

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// What a service may name as a dependency. An installer must never execute
// service-supplied code and must fetch only from the registry the node
// configured, so a requirements.txt, a package.json (with its lock) and
// `deps add` may name packages only by registry name with a version
// specifier: pip builds a local project, a VCS checkout or an sdist URL with
// the project's own build backend (even with --only-binary=:all:, pip runs
// the backend of a local directory), and npm packs, clones or fetches what a
// file:, link:, git or URL spec names. Config.AllowAnyDepSource lifts these
// rules for the service's own files; includes (-r, -c) stay confined to the
// service directory either way, since the node reads them.

// DepSourceError is a dependency the driver refuses to install: a local
// path, URL, VCS spec or installer option in a service's requirements.txt,
// package.json or package-lock.json, or in a package given to AddDep.
// Deploy, AddDep and RemoveDep return it wrapped; errors.As finds it.
type DepSourceError struct {
	File string // the file as the service names it (requirements.txt, base/common.txt, package.json), or "deps add"
	Line int    // 1-based line of the offending entry; 0 when not known
	Rule string // what is not allowed, and what is
}

func (e *DepSourceError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Rule)
	}
	return e.File + ": " + e.Rule
}

// The rules a DepSourceError names.
const (
	rulePySource = "local paths, URLs and VCS requirements are not allowed (only name[extras] version-specifier lines)"
	rulePyEdit   = "editable requirements (-e) are not allowed (only name[extras] version-specifier lines)"
	ruleNPMSpec  = "local paths, URLs and git specs are not allowed (only registry versions, ranges, tags and npm: aliases)"
	ruleAddPath  = "a package file must be inside the node's local registry directory"
)

// Python: PEP 508 requirements by name (no "@ url"), with extras, version
// specifiers and environment markers; pip reads a line whose name part has
// a '/', a leading '.', a ':' or an archive suffix as a path or URL.
var (
	pyName      = `[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?`
	pyClause    = `(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+`
	pySpecs     = pyClause + `(?:\s*,\s*` + pyClause + `)*`
	pyRequireRe = regexp.MustCompile(`^` + pyName + `\s*(?:\[\s*(?:` + pyName + `(?:\s*,\s*` + pyName + `)*)?\s*\])?\s*(?:\(\s*` + pySpecs + `\s*\)|` + pySpecs + `)?$`)
	pyMarkerRe  = regexp.MustCompile(`^[A-Za-z0-9_\s.'"<>=!~()*+,-]+$`)
	pyHashRe    = regexp.MustCompile(`^--hash=[a-z0-9]+:[A-Fa-f0-9]+$`)
	pyCommentRe = regexp.MustCompile(`(^|\s+)#.*$`)
	// archiveSuffixes are the file names pip (is_archive_file) and npm
	// (npm-package-arg) read as a package file rather than a name.
	archiveSuffixes = []string{".whl", ".zip", ".tar", ".tgz", ".tbz", ".txz", ".tlz", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.lz", ".tar.lzma"}
)

// pyGlobalOptions are the options a requirements file may carry on a line
// of their own: they choose among registry releases and nothing else.
var pyGlobalOptions = map[string]bool{"--pre": true, "--prefer-binary": true, "--require-hashes": true}

// maxIncludeDepth bounds nested -r and -c includes.
const maxIncludeDepth = 8

// pyRequirements is a service's requirements.txt with every -r and -c
// include read from the service directory and inlined: what pip is given.
type pyRequirements struct {
	reqs        []string // requirement and option lines, as checked
	constraints []string // the lines of constraint files (-c)
}

// readRequirements reads name (a path relative to the service directory
// dir) and the files it includes, checking every line; allowAny passes
// lines that name local paths, URLs, VCS checkouts and installer options
// through unchecked. A missing name is no requirements. Includes are read
// through an os.Root, so neither "../" nor a symbolic link reaches outside
// dir.
func readRequirements(dir, name string, allowAny bool) (pyRequirements, error) {
	var out pyRequirements
	root, err := os.OpenRoot(dir)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	defer root.Close()
	if _, err := root.Stat(name); errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	r := reqReader{root: root, allowAny: allowAny, seen: map[string]bool{}}
	if err := r.read(name, false, 0, &out); err != nil {
		return pyRequirements{}, err
	}
	return out, nil
}

type reqReader struct {
	root     *os.Root
	allowAny bool
	seen     map[string]bool
}

// read checks file's logical lines and appends them to out: to the
// constraints when constraint, else to the requirements.
func (r *reqReader) read(file string, constraint bool, depth int, out *pyRequirements) error {
	if r.seen[file] {
		return nil // pip would read it twice; once says the same
	}
	r.seen[file] = true
	f, err := r.root.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if len(raw) > 1<<20 {
		return fmt.Errorf("%s: larger than 1 MiB", file)
	}
	for _, ll := range logicalLines(raw) {
		bad := func(rule string) error { return &DepSourceError{File: file, Line: ll.n, Rule: rule} }
		line := ll.text
		if !strings.HasPrefix(line, "-") {
			if rule := checkPyRequirement(line); rule != "" && !r.allowAny {
				return bad(rule)
			}
			if constraint {
				out.constraints = append(out.constraints, line)
			} else {
				out.reqs = append(out.reqs, line)
			}
			continue
		}
		fields := strings.Fields(line)
		opt, val, hasVal := fields[0], "", false
		if strings.HasPrefix(opt, "--") {
			opt, val, hasVal = strings.Cut(opt, "=")
		} else if len(opt) > 2 {
			opt, val, hasVal = opt[:2], opt[2:], true // -rfile
		}
		rest := fields[1:]
		switch {
		case opt == "-r" || opt == "--requirement" || opt == "-c" || opt == "--constraint":
			if !hasVal && len(rest) == 1 {
				val, hasVal, rest = rest[0], true, nil
			}
			if !hasVal || len(rest) > 0 {
				return bad(fmt.Sprintf("%s takes one file", opt))
			}
			inc, err := includePath(file, val)
			if err != nil {
				return bad(err.Error())
			}
			if depth+1 > maxIncludeDepth {
				return bad(fmt.Sprintf("includes nest deeper than %d files", maxIncludeDepth))
			}
			if err := r.read(inc, opt == "-c" || opt == "--constraint", depth+1, out); err != nil {
				var dse *DepSourceError
				switch {
				case errors.As(err, &dse):
					return err
				case errors.Is(err, os.ErrNotExist):
					return bad(fmt.Sprintf("%s %s: no such file in the service directory", opt, val))
				}
				return bad(fmt.Sprintf("%s %s: %v", opt, val, err))
			}
		case len(rest) == 0 && !hasVal && pyGlobalOptions[opt]:
			out.reqs = append(out.reqs, line)
		case opt == "-e" || opt == "--editable":
			if !r.allowAny {
				return bad(rulePyEdit)
			}
			out.reqs = append(out.reqs, line)
		default:
			if !r.allowAny {
				return bad(fmt.Sprintf("option %s is not allowed in a requirements file (the node chooses the registry and how packages install; allowed: --pre, --prefer-binary, --require-hashes, and --hash after a requirement)", opt))
			}
			out.reqs = append(out.reqs, line)
		}
	}
	return nil
}

// includePath resolves an include named in file (both relative to the
// service directory, slash-separated) as pip does, relative to the
// including file; it must stay inside the service directory.
func includePath(file, name string) (string, error) {
	switch {
	case strings.Contains(name, "://") || strings.HasPrefix(name, "file:"):
		return "", fmt.Errorf("%s: an included file must be a relative path inside the service directory, not a URL", name)
	case path.IsAbs(name) || strings.HasPrefix(name, "~"):
		return "", fmt.Errorf("%s: an included file must be a relative path inside the service directory", name)
	}
	inc := path.Join(path.Dir(file), name)
	if !filepath.IsLocal(filepath.FromSlash(inc)) {
		return "", fmt.Errorf("%s: an included file must be inside the service directory", name)
	}
	return inc, nil
}

// logicalLine is one line of a requirements file as pip reads it:
// continuations joined, comments and surrounding space removed.
type logicalLine struct {
	n    int // the line it starts on
	text string
}

func logicalLines(raw []byte) []logicalLine {
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
	var out []logicalLine
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, len(raw)+1)
	var cur strings.Builder
	start, n := 0, 0
	flush := func() {
		text := strings.TrimSpace(pyCommentRe.ReplaceAllString(cur.String(), ""))
		if text != "" {
			out = append(out, logicalLine{start, text})
		}
		cur.Reset()
		start = 0
	}
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if start == 0 {
			start = n
		}
		if strings.HasSuffix(line, `\`) && !pyCommentRe.MatchString(line) {
			cur.WriteString(strings.TrimSuffix(line, `\`))
			continue
		}
		cur.WriteString(line)
		flush()
	}
	if cur.Len() > 0 {
		flush()
	}
	return out
}

// checkPyRequirement returns the rule a requirement line breaks, or "": it
// must be a name, optional extras and version specifiers, an optional
// environment marker after ';', and optional --hash options.
func checkPyRequirement(line string) string {
	// pip splits a line into the requirement and its options at the first
	// space-separated word that starts with '-' (break_args_options).
	req, opts := line, ""
	if words := strings.Split(line, " "); len(words) > 1 {
		for i, w := range words {
			if strings.HasPrefix(w, "-") {
				req, opts = strings.Join(words[:i], " "), strings.Join(words[i:], " ")
				break
			}
		}
	}
	for _, o := range strings.Fields(opts) {
		if !pyHashRe.MatchString(o) {
			if o == "--hash" {
				return "write --hash=ALGORITHM:DIGEST as one word"
			}
			opt, _, _ := strings.Cut(o, "=")
			return fmt.Sprintf("option %s is not allowed after a requirement (only --hash)", opt)
		}
	}
	name, marker, hasMarker := strings.Cut(req, ";")
	name = strings.TrimSpace(name)
	if hasMarker && !pyMarkerRe.MatchString(marker) {
		return rulePySource
	}
	if !pyRequireRe.MatchString(name) {
		return rulePySource
	}
	lower := strings.ToLower(strings.TrimRight(name, " "))
	for _, s := range archiveSuffixes {
		if strings.HasSuffix(lower, s) {
			return rulePySource
		}
	}
	return ""
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
		bad := func(rule string) error { return &DepSourceError{File: nodeManifest, Line: line, Rule: rule} }
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
			return &DepSourceError{File: nodeLock, Line: line, Rule: fmt.Sprintf("%s = %q: %s", jsonPath(p), v, rule)}
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

// checkAdded checks a package given to AddDep: a registry name with an
// optional version spec ("left-pad@^1", "@scope/x@2", "requests[socks]>=2"),
// or a package file inside the local registry directory registry ("" when
// the registry is not local; for Python a wheel, which installs without
// running anything). allowAny lets any spec through.
func checkAdded(lang, spec, registry string, allowAny bool) error {
	if allowAny {
		return nil
	}
	bad := func(rule string) error {
		return &DepSourceError{File: "deps add", Rule: fmt.Sprintf("%s: %s", spec, rule)}
	}
	if filepath.IsAbs(spec) {
		rel, err := filepath.Rel(registry, spec)
		if registry == "" || err != nil || !filepath.IsLocal(rel) {
			return bad(ruleAddPath)
		}
		if lang == LangPython && !strings.HasSuffix(strings.ToLower(spec), ".whl") {
			return bad("a Python package file must be a wheel (.whl): pip builds anything else with its own code")
		}
		return nil
	}
	switch lang {
	case LangNode:
		name, rng := spec, ""
		if i := strings.LastIndex(spec, "@"); i > 0 {
			name, rng = spec[:i], spec[i+1:]
		}
		if !npmNameRe.MatchString(name) {
			return bad(ruleNPMSpec)
		}
		if rule := checkNPMSpec(rng); rule != "" {
			return bad(rule)
		}
	case LangPython:
		if rule := checkPyRequirement(spec); rule != "" {
			return bad(rule)
		}
	}
	return nil
}
