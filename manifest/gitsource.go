package manifest

import (
	"net/url"
	"path"
	"regexp"
	"strings"
)

var (
	commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)
	// refRE is a conservative subset of git check-ref-format: the names
	// people give tags and branches.
	refRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+/-]*$`)
)

// maxRefLen and maxSourcePath bound source.ref and source.path.
const (
	maxRefLen     = 255
	maxSourcePath = 1024
)

// gitSource checks source.git, source.commit, source.ref and source.path.
func (v *validator) gitSource(s *Source) {
	if v.httpsURL("source.git", s.Git) {
		if u, _ := url.Parse(s.Git); u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
			v.fail("source.git", "must not have a query or fragment")
		} else if strings.Trim(u.Path, "/") == "" {
			v.fail("source.git", "must name a repository, like https://github.com/owner/repo")
		}
	}
	switch {
	case s.Commit == "":
		v.fail("source.commit", "required with source.git: the full commit hash, 40 hex digits")
	case !commitRE.MatchString(s.Commit):
		v.fail("source.commit", "must be a full commit hash: 40 lowercase hex digits, not a ref or an abbreviated hash")
	}
	if r := s.Ref; r != "" && !validRef(r) {
		v.fail("source.ref", "must be a tag or branch name like v1.2 or main (letters, digits and . _ + - /, no \"..\", at most %d characters)", maxRefLen)
	}
	if p := s.Path; p != "" {
		switch {
		case len(p) > maxSourcePath:
			v.fail("source.path", "must be at most %d characters", maxSourcePath)
		case strings.ContainsAny(p, "\\\x00") || strings.IndexFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
			v.fail("source.path", "must not contain backslashes or control characters")
		case strings.HasPrefix(p, "/"):
			v.fail("source.path", "must be relative to the repository's root")
		case p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.."):
			v.fail("source.path", "must not contain \"..\"")
		case path.Clean(p) != p || p == ".":
			v.fail("source.path", "must be a clean path like services/hello (no ./, // or trailing /)")
		}
	}
}

// validRef reports whether r is a tag or branch name this node fetches.
func validRef(r string) bool {
	return len(r) <= maxRefLen && refRE.MatchString(r) &&
		!strings.Contains(r, "..") && !strings.Contains(r, "//") && !strings.Contains(r, "/.") &&
		!strings.HasSuffix(r, "/") && !strings.HasSuffix(r, ".") && !strings.HasSuffix(r, ".lock")
}
