package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxHops bounds the symlinks followed while resolving one target, as Linux
// does (ELOOP after 40).
const maxHops = 40

// maxElem is the longest path element most file systems accept.
const maxElem = 255

type kind uint8

const (
	kindDir kind = iota + 1
	kindFile
	kindLink
)

// node is one file, directory or symlink of a tree.
type node struct {
	kind     kind
	explicit bool   // listed, not only implied by a deeper path
	entry    string // the name it was listed under, for errors
	exec     bool
	size     int64
	sum      [sha256.Size]byte
	target   string // symlink target as stored
}

// tree is the set of nodes an archive or a directory holds, keyed by clean
// path. Pack, DigestDir, Unpack and Inspect all build one, so they apply the
// same rules and compute the same digest.
type tree struct {
	nodes map[string]*node
	links []string // symlink paths in the order added
}

func newTree() *tree { return &tree{nodes: make(map[string]*node)} }

// add inserts n at the clean path p, listed as entry. It returns the
// ancestor directories that did not exist yet, shallowest first, and
// whether n is new (an explicit directory already implied is not).
func (t *tree) add(p, entry string, n *node, maxEntries int) (implied []string, isNew bool, err error) {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		anc := p[:i]
		switch a := t.nodes[anc]; {
		case a == nil:
			implied = append(implied, anc)
		case a.kind == kindLink:
			return nil, false, refuse(entry, "path goes through symlink %q", anc)
		case a.kind == kindFile:
			return nil, false, refuse(entry, "parent %q is a file", anc)
		}
	}
	if old := t.nodes[p]; old != nil {
		switch {
		case old.explicit:
			return nil, false, refuse(entry, "duplicate entry")
		case n.kind == kindDir:
			old.explicit, old.entry = true, entry
			return nil, false, nil
		default:
			return nil, false, refuse(entry, "path is a directory implied by an earlier entry")
		}
	}
	if len(t.nodes)+len(implied)+1 > maxEntries {
		return nil, false, tooLarge(entry, "more than %d entries", maxEntries)
	}
	for _, d := range implied {
		t.nodes[d] = &node{kind: kindDir}
	}
	n.explicit, n.entry = true, entry
	t.nodes[p] = n
	if n.kind == kindLink {
		t.links = append(t.links, p)
	}
	return implied, true, nil
}

// checkLinks checks that every symlink resolves inside the tree, following
// the tree's own symlinks on the way, as the kernel would once unpacked.
// Targets that do not exist are allowed as long as they stay inside.
func (t *tree) checkLinks() error {
	for _, p := range t.links {
		n := t.nodes[p]
		dir := strings.Split(p, "/")
		dir = dir[:len(dir)-1]
		hops := 0
		if _, rule := t.resolve(dir, n.target, &hops); rule != "" {
			return refuse(n.entry, "%s", rule)
		}
	}
	return nil
}

// resolve walks target from the directory cur (path elements), following
// symlinks of the tree, and returns where it lands, or the rule it breaks.
func (t *tree) resolve(cur []string, target string, hops *int) ([]string, string) {
	cur = slices.Clone(cur)
	for _, el := range strings.Split(target, "/") {
		switch el {
		case "", ".":
		case "..":
			if len(cur) == 0 {
				return nil, "symlink target escapes the service directory"
			}
			cur = cur[:len(cur)-1]
		default:
			cur = append(cur, el)
			n := t.nodes[strings.Join(cur, "/")]
			if n == nil || n.kind != kindLink {
				continue
			}
			*hops++
			if *hops > maxHops {
				return nil, fmt.Sprintf("symlink target loops or follows more than %d links", maxHops)
			}
			var rule string
			if cur, rule = t.resolve(cur[:len(cur)-1], n.target, hops); rule != "" {
				return nil, rule
			}
		}
	}
	return cur, ""
}

// info returns the tree's Info, digest included. File sums must be set.
func (t *tree) info() Info {
	paths := make([]string, 0, len(t.nodes))
	for p := range t.nodes {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var info Info
	h := sha256.New()
	var line []byte
	for _, p := range paths {
		n := t.nodes[p]
		line = line[:0]
		switch n.kind {
		case kindDir:
			info.Dirs++
			line = append(line, "dir\t"...)
			line = append(line, p...)
		case kindFile:
			info.Files++
			info.Size += n.size
			mode := "644"
			if n.exec {
				mode = "755"
			}
			line = append(line, "file\t"...)
			line = append(line, p...)
			line = append(line, '\t')
			line = append(line, mode...)
			line = append(line, '\t')
			line = strconv.AppendInt(line, n.size, 10)
			line = append(line, '\t')
			line = hex.AppendEncode(line, n.sum[:])
		case kindLink:
			info.Files++
			line = append(line, "symlink\t"...)
			line = append(line, p...)
			line = append(line, '\t')
			line = append(line, n.target...)
		}
		line = append(line, '\n')
		h.Write(line)
	}
	info.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return info
}

// cleanPath checks a name (what is "path" or "hard link target") and returns
// its clean form, or the rule it breaks. The clean form of the root is ".".
func cleanPath(name, what string, lim Limits) (string, string) {
	if rule := checkChars(name, what); rule != "" {
		return "", rule
	}
	p := path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", what + " escapes the service directory"
	}
	if len(p) > lim.MaxPathLen {
		return "", fmt.Sprintf("%s longer than %d bytes", what, lim.MaxPathLen)
	}
	if depth := strings.Count(p, "/") + 1; depth > lim.MaxDepth {
		return "", fmt.Sprintf("%s deeper than %d elements", what, lim.MaxDepth)
	}
	for el := range strings.SplitSeq(p, "/") {
		if len(el) > maxElem {
			return "", fmt.Sprintf("%s element longer than %d bytes", what, maxElem)
		}
	}
	return p, ""
}

// checkTarget checks a symlink target's syntax; checkLinks checks where it
// leads.
func checkTarget(target string, lim Limits) string {
	const what = "symlink target"
	if rule := checkChars(target, what); rule != "" {
		return rule
	}
	if len(target) > lim.MaxPathLen {
		return fmt.Sprintf("%s longer than %d bytes", what, lim.MaxPathLen)
	}
	return ""
}

// checkChars holds the rules shared by names and link targets.
func checkChars(s, what string) string {
	switch {
	case s == "":
		return what + " is empty"
	case !utf8.ValidString(s):
		return what + " is not valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return what + " contains a NUL byte"
	case strings.IndexByte(s, '\\') >= 0:
		return what + " contains a backslash"
	case strings.IndexFunc(s, isControl) >= 0:
		return what + " contains a control character"
	case s[0] == '/':
		return what + " is absolute"
	case len(s) >= 2 && s[1] == ':' && ('a' <= s[0]|0x20 && s[0]|0x20 <= 'z'):
		return what + " starts with a windows drive letter"
	}
	return ""
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
