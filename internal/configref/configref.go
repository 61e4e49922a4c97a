// Package configref makes the node's configuration reference
// (docs/config.md) from the config structs themselves: the keys and their
// nesting from the config type by reflection (the yaml tags the strict
// decoder reads), the text of each key from its field's doc comment in
// the Go sources. Its test renders node.Config's and fails while the
// committed file is behind (go test ./internal/configref -update writes
// it): the reference cannot drift from the code. It takes the type as a
// value, so that only the binary imports the node.
package configref

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
)

// module is the import path the repository's packages live under.
const module = "github.com/andromeda-runner/andromeda"

// Key is one key of the config file.
type Key struct {
	// Path is its place, dotted: "cluster.lost_after", "services[].dir",
	// "executors.targets.<name>.url".
	Path string
	// Type is what it holds, as a person writes it: string, integer,
	// number, boolean, duration, size, cpu, list of …, map of …, object.
	Type string
	// Doc is its field's doc comment, as one paragraph.
	Doc string
}

// Section is a top-level key whose value is an object, with every key
// under it; the first section ("") holds the top-level keys that are not.
type Section struct {
	Name string
	Doc  string // the doc comment of its field in node.Config
	Keys []Key
}

// Keys walks the config struct type rt (node.Config) and returns its keys
// in sections, in the order of the fields, with the doc comments read
// from the Go sources under root (the repository's root directory).
func Keys(root string, rt reflect.Type) ([]Section, error) {
	docs := docIndex{root: root, fields: map[string]string{}, parsed: map[string]bool{}}
	top := Section{}
	var sections []Section
	names := goNames(rt)
	for f := range fields(rt) {
		name := yamlName(f)
		doc, err := docs.field(rt, f.Name)
		if err != nil {
			return nil, err
		}
		doc = inKeys(doc, f.Name, names)
		t := deref(f.Type)
		if t.Kind() == reflect.Struct && !scalar(t) {
			s := Section{Name: name, Doc: doc}
			if err := walk(&docs, t, name, &s.Keys, map[reflect.Type]bool{}); err != nil {
				return nil, err
			}
			sections = append(sections, s)
			continue
		}
		top.Keys = append(top.Keys, Key{Path: name, Type: typeName(f.Type), Doc: doc})
		if err := walkElem(&docs, f.Type, name, &top.Keys, map[reflect.Type]bool{}); err != nil {
			return nil, err
		}
	}
	if len(docs.missing) > 0 {
		return nil, fmt.Errorf("configref: fields without a doc comment (say what the key is for and its default): %s", strings.Join(docs.missing, ", "))
	}
	return append([]Section{top}, sections...), nil
}

// walk adds the keys of struct type rt, under prefix, to keys.
func walk(docs *docIndex, rt reflect.Type, prefix string, keys *[]Key, seen map[reflect.Type]bool) error {
	if seen[rt] {
		return nil // a type that holds itself: its keys are listed above
	}
	seen[rt] = true
	defer delete(seen, rt)
	names := goNames(rt)
	for f := range fields(rt) {
		path := prefix + "." + yamlName(f)
		doc, err := docs.field(rt, f.Name)
		if err != nil {
			return err
		}
		doc = inKeys(doc, f.Name, names)
		*keys = append(*keys, Key{Path: path, Type: typeName(f.Type), Doc: doc})
		if err := walkElem(docs, f.Type, path, keys, seen); err != nil {
			return err
		}
	}
	return nil
}

// walkElem adds the keys inside a value of type t at path: those of an
// object, of each object of a list ("path[].key") or of each value of a
// map ("path.<name>.key").
func walkElem(docs *docIndex, t reflect.Type, path string, keys *[]Key, seen map[reflect.Type]bool) error {
	t = deref(t)
	switch {
	case t.Kind() == reflect.Slice && isObject(t.Elem()):
		return walk(docs, deref(t.Elem()), path+"[]", keys, seen)
	case t.Kind() == reflect.Map && isObject(t.Elem()):
		return walk(docs, deref(t.Elem()), path+".<name>", keys, seen)
	case isObject(t):
		return walk(docs, t, path, keys, seen)
	}
	return nil
}

// goNames maps the Go names of rt's keys to their names in the file.
func goNames(rt reflect.Type) map[string]string {
	m := map[string]string{}
	for f := range fields(rt) {
		m[f.Name] = yamlName(f)
	}
	return m
}

var (
	// camel is a Go name of more than one word (UploadMinRate); word a
	// one-word name after a word that points at a key ("see Replicas",
	// "required with Name", "unless Service is set", "in Currency").
	camel   = regexp.MustCompile(`\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+\b`)
	word    = regexp.MustCompile(`\b(see|with|unless|when|in|of) ([A-Z][a-z0-9]+)\b`)
	seeType = regexp.MustCompile(`(?::\s*see|\.\s*See|\s*\(see)\s+[A-Z]\w*Config\)?`)
)

// inKeys turns a field's doc comment, written for Go readers, into the
// reference's words: the field's own name leading the text as its subject
// goes ("ReadTimeout is how long …" → "How long …"), a sibling field's Go
// name becomes its key in the file ("see UploadMinRate" → "see
// `+"`upload_min_rate`"+`"), and a pointer to a config type ("see ClusterConfig")
// goes, its keys being listed right below.
func inKeys(doc, self string, names map[string]string) string {
	for _, lead := range []string{self + " is ", self + " are ", self + ": "} {
		if rest, ok := strings.CutPrefix(doc, lead); ok && rest != "" {
			doc = strings.ToUpper(rest[:1]) + rest[1:]
			break
		}
	}
	doc = seeType.ReplaceAllString(doc, "")
	doc = camel.ReplaceAllStringFunc(doc, func(w string) string {
		if key, ok := names[w]; ok {
			return "`" + key + "`"
		}
		return w
	})
	return word.ReplaceAllStringFunc(doc, func(m string) string {
		pre, w, _ := strings.Cut(m, " ")
		if key, ok := names[w]; ok {
			return pre + " `" + key + "`"
		}
		return m
	})
}

// fields yields the struct fields of rt that are keys of the file: the
// exported ones whose yaml tag is not "-".
func fields(rt reflect.Type) func(func(reflect.StructField) bool) {
	return func(yield func(reflect.StructField) bool) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			if !f.IsExported() || f.Tag.Get("yaml") == "-" {
				continue
			}
			if !yield(f) {
				return
			}
		}
	}
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func isObject(t reflect.Type) bool {
	t = deref(t)
	return t.Kind() == reflect.Struct && !scalar(t)
}

// scalar reports whether values of struct type t are written as one
// value, not an object: sizes, durations, CPUs (their JSON form is not an
// object).
func scalar(t reflect.Type) bool {
	b, err := json.Marshal(reflect.New(t).Interface())
	return err == nil && len(b) > 0 && b[0] != '{'
}

// typeName is what a key of type t holds, as a person writes it.
func typeName(t reflect.Type) string {
	t = deref(t)
	if t.Kind() == reflect.Struct && scalar(t) {
		switch t.Name() {
		case "Bytes":
			return "size"
		case "Duration":
			return "duration"
		}
		return strings.ToLower(t.Name())
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if t.PkgPath() == "time" && t.Name() == "Duration" {
			return "duration"
		}
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list of " + plural(typeName(t.Elem()))
	case reflect.Map:
		return "map of " + plural(typeName(t.Elem()))
	case reflect.Struct:
		return "object"
	}
	return "any"
}

func plural(s string) string {
	switch {
	case strings.HasPrefix(s, "list of "), strings.HasPrefix(s, "map of "), s == "any":
		return s
	case s == "boolean":
		return "booleans"
	}
	return s + "s"
}

// docIndex reads the doc comments of struct fields from the Go sources
// of the packages they are declared in, one package at a time as needed.
type docIndex struct {
	root   string
	fields map[string]string // "pkgpath.Type.Field" → doc
	parsed map[string]bool
	// missing are the fields without a doc comment: every key of the file
	// says what it is, so each is an error.
	missing []string
}

// field returns the doc comment of field name of struct type rt: the
// comment above it, else the one after it on its line. A field with
// neither is recorded missing.
func (d *docIndex) field(rt reflect.Type, name string) (string, error) {
	pkg := rt.PkgPath()
	typ, _, _ := strings.Cut(rt.Name(), "[") // a generic type's name carries its arguments
	if err := d.parse(pkg); err != nil {
		return "", err
	}
	doc, ok := d.fields[pkg+"."+typ+"."+name]
	if !ok || doc == "" {
		d.missing = append(d.missing, strings.TrimPrefix(pkg, module+"/")+"."+typ+"."+name)
	}
	return doc, nil
}

func (d *docIndex) parse(pkg string) error {
	if d.parsed[pkg] {
		return nil
	}
	d.parsed[pkg] = true
	rel, ok := strings.CutPrefix(pkg, module)
	if !ok {
		return fmt.Errorf("configref: a config type from %s, outside the module", pkg)
	}
	dir := filepath.Join(d.root, filepath.FromSlash(strings.TrimPrefix(rel, "/")))
	fset := token.NewFileSet()
	notTest := func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }
	pkgs, err := parser.ParseDir(fset, dir, notTest, parser.ParseComments)
	if err != nil {
		return fmt.Errorf("configref: %w", err)
	}
	for _, p := range pkgs {
		for _, file := range p.Files {
			ast.Inspect(file, func(n ast.Node) bool {
				ts, ok := n.(*ast.TypeSpec)
				if !ok {
					return true
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					return true
				}
				// A comment above a group of fields ("User and Password
				// authenticate routes") is the doc of each of them.
				group, groupEnd := "", -1
				for _, f := range st.Fields.List {
					text := f.Doc.Text()
					if text == "" {
						text = f.Comment.Text()
					}
					line := fset.Position(f.Pos()).Line
					switch {
					case f.Doc != nil:
						group = text
					case text == "" && line == groupEnd+1:
						text = group
					default:
						group = ""
					}
					groupEnd = fset.Position(f.End()).Line
					for _, id := range f.Names {
						d.fields[pkg+"."+ts.Name.Name+"."+id.Name] = paragraph(text)
					}
				}
				return true
			})
		}
	}
	return nil
}

var spaces = regexp.MustCompile(`\s+`)

// paragraph joins a comment's lines into one paragraph.
func paragraph(s string) string { return strings.TrimSpace(spaces.ReplaceAllString(s, " ")) }

// Markdown renders the reference.
func Markdown(sections []Section) string {
	var b strings.Builder
	b.WriteString(`# Configuration reference

<!-- Generated from the doc comments of node.Config and the types it
holds by go test ./internal/configref -update; the same test fails while
this file is behind the code. Edit the comments, not this file. -->

The node reads its configuration from the file ` + "`serve --config`" + ` names:
YAML, JSON or TOML by its extension, decoded strictly (an unknown key is
an error naming it and the keys it might have meant). Every key is
optional: what the node does without it is in its text. The policy
(` + "`policy:`" + `) may also be a file of its own, reloaded on SIGHUP. Types:
a *size* is bytes or a number with a unit (` + "`512Mi`" + `, ` + "`1Gi`" + `), a
*duration* a Go duration (` + "`30s`" + `, ` + "`5m`" + `), a *cpu* cores (` + "`0.5`" + `) or
millicores (` + "`500m`" + `); ` + "`[]`" + ` marks each element of a list and
` + "`<name>`" + ` each key of a map.

`)
	b.WriteString("Sections:")
	for i, s := range sections[1:] {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " [%s](#%s)", s.Name, anchor(s.Name))
	}
	b.WriteString(".\n")
	for _, s := range sections {
		if s.Name == "" {
			b.WriteString("\n## Top-level keys\n\n")
		} else {
			fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", s.Name, s.Doc)
		}
		b.WriteString("| key | type | what it is |\n| --- | --- | --- |\n")
		for _, k := range s.Keys {
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", k.Path, k.Type, cell(k.Doc))
		}
	}
	return b.String()
}

// cell makes text safe in a Markdown table cell: a | would end the cell,
// and <data> would be read as an HTML tag.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}

// anchor is the heading anchor GitHub and most renderers make of a
// section's name (lower-case letters, digits and underscores).
func anchor(s string) string { return strings.ToLower(s) }

// Paths lists every key's path, for tests.
func Paths(sections []Section) []string {
	var out []string
	for _, s := range sections {
		if s.Name != "" {
			out = append(out, s.Name)
		}
		for _, k := range s.Keys {
			out = append(out, k.Path)
		}
	}
	slices.Sort(out)
	return out
}
