package deps

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/andromeda-runner/andromeda/sandbox/jail"
)

// Pip installs a Python service's requirements.txt into a target
// directory with pip, which installs wheels only.
var Pip = &Manager{
	Language:   "python",
	Manifest:   pythonManifest,
	Subdir:     "site",
	Registries: []string{"pypi.org:443", "files.pythonhosted.org:443"},
	Package:    "python3-pip",
	tool:       pip{},
}

// pythonManifest is the file a Python service declares its dependencies in.
const pythonManifest = "requirements.txt"

type pip struct{}

func (pip) read(dir string, added []string, allowAny bool) (declared, error) {
	py, err := readRequirements(dir, pythonManifest, allowAny)
	if err != nil {
		return declared{}, err
	}
	if !slices.ContainsFunc(py.reqs, func(l string) bool { return !strings.HasPrefix(l, "-") || strings.HasPrefix(l, "-e") }) {
		py.reqs = nil // nothing but options
	}
	d := declared{reqs: py.reqs, constraints: py.constraints}
	if len(py.reqs) > 0 {
		d.src = []byte(strings.Join(py.reqs, "\n") + "\x00" + strings.Join(py.constraints, "\n"))
	}
	return d, nil
}

func (pip) stage(j job) (target, cwd string, argv []string, err error) {
	reqs := strings.Join(append(slices.Clone(j.decl.reqs), j.added...), "\n") + "\n"
	if err := os.WriteFile(filepath.Join(j.dir, pythonManifest), []byte(reqs), 0o644); err != nil {
		return "", "", nil, err
	}
	cwd = installPython
	if j.allowAny {
		cwd = svcDir // relative paths in requirements.txt are the service's
	}
	argv = append(slices.Clone(j.argv), "install", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
		"--no-warn-script-location", "--only-binary=:all:", "--target", installPython+"/"+Pip.Subdir, "-r", installPython+"/"+pythonManifest)
	if len(j.decl.constraints) > 0 {
		const constraints = "constraints.txt"
		if err := os.WriteFile(filepath.Join(j.dir, constraints), []byte(strings.Join(j.decl.constraints, "\n")+"\n"), 0o644); err != nil {
			return "", "", nil, err
		}
		argv = append(argv, "-c", installPython+"/"+constraints)
	}
	switch {
	case j.local:
		argv = append(argv, "--no-index", "--find-links", localRegistry)
	case j.registry != "":
		argv = append(argv, "--index-url", j.registry, "--proxy", jail.EgressProxy)
		if u, err := url.Parse(j.registry); err == nil && u.Scheme == "http" {
			// The operator chose a plain-HTTP registry: pip takes it
			// only from a host it is told to trust.
			argv = append(argv, "--trusted-host", u.Host)
		}
	default:
		argv = append(argv, "--proxy", jail.EgressProxy)
	}
	return installPython, cwd, argv, nil
}

func (pip) list(dir string) ([]Dep, error) { return listPythonSite(dir) }

func (pip) checkSpec(spec string) string { return checkPyRequirement(spec) }

func (pip) checkFile(path string) string {
	if !strings.HasSuffix(strings.ToLower(path), ".whl") {
		return "a Python package file must be a wheel (.whl): pip builds anything else with its own code"
	}
	return ""
}

// fileName reads a wheel's name-version-....
func (pip) fileName(base string) string {
	name, _, _ := strings.Cut(base, "-")
	return name
}

func (pip) specName(spec string) string {
	if i := strings.IndexAny(spec, "<>=!~[; @("); i > 0 {
		return spec[:i]
	}
	return spec
}

// normal spells a name as PyPI compares names: case-insensitive, with -,
// _ and . equivalent (PEP 503).
func (pip) normal(name string) string {
	name = strings.ToLower(name)
	return strings.NewReplacer("_", "-", ".", "-").Replace(name)
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
		dep := Dep{Language: "python"}
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
		return strings.Compare(pip{}.normal(a.Name), pip{}.normal(b.Name))
	})
	return deps, nil
}

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
		bad := func(rule string) error { return &SourceError{File: file, Line: ll.n, Rule: rule} }
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
				var dse *SourceError
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
