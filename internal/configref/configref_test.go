package configref_test

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/internal/configref"
	"github.com/andromeda-runner/andromeda/node"
)

const root = "../.."

var update = flag.Bool("update", false, "write docs/config.md from the config structs")

var config = reflect.TypeOf(node.Config{})

// TestReferenceIsCurrent: docs/config.md is what the config structs'
// doc comments make now; -update writes it.
func TestReferenceIsCurrent(t *testing.T) {
	sections, err := configref.Keys(root, config)
	if err != nil {
		t.Fatal(err)
	}
	want := configref.Markdown(sections)
	path := filepath.Join(root, "docs", "config.md")
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("docs/config.md is behind the config structs: go test ./internal/configref -update writes it")
	}
}

// TestEveryKey: every key the strict decoder takes (the yaml tags of
// node.Config, through objects, lists and maps of objects) is in the
// reference, found by a walk of its own; and a few keys are where an
// operator looks for them, with their defaults in the text.
func TestEveryKey(t *testing.T) {
	sections, err := configref.Keys(root, config)
	if err != nil {
		t.Fatal(err)
	}
	listed := configref.Paths(sections)
	var want []string
	var walk func(rt reflect.Type, prefix string)
	walk = func(rt reflect.Type, prefix string) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || tag == "-" {
				continue
			}
			path := tag
			if prefix != "" {
				path = prefix + "." + tag
			}
			want = append(want, path)
			ft := deref(f.Type)
			switch {
			case ft.Kind() == reflect.Slice && keyed(deref(ft.Elem())):
				walk(deref(ft.Elem()), path+"[]")
			case ft.Kind() == reflect.Map && keyed(deref(ft.Elem())):
				walk(deref(ft.Elem()), path+".<name>")
			case keyed(ft):
				walk(ft, path)
			}
		}
	}
	walk(config, "")
	slices.Sort(want)
	for _, p := range want {
		if _, found := slices.BinarySearch(listed, p); !found {
			t.Errorf("key %s is not in the reference", p)
		}
	}
	doc := map[string]configref.Key{}
	for _, s := range sections {
		for _, k := range s.Keys {
			doc[k.Path] = k
		}
	}
	for path, words := range map[string]string{
		"listen":                            "127.0.0.1:7070",
		"cluster.lost_after":                "",
		"lifecycle.stop_grace":              "5s",
		"policy.limits.memory":              "512Mi",
		"runs.per_service":                  "1000",
		"executors.targets.<name>.endpoint": "http",
	} {
		k, ok := doc[path]
		if !ok || !strings.Contains(k.Doc, words) {
			t.Errorf("%s: %+v; want it listed, saying %q", path, k, words)
		}
	}
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// keyed reports whether t is a struct with keys of the file (a yaml tag
// on any field), not a scalar written as one value.
func keyed(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("yaml") != "" {
			return true
		}
	}
	return false
}

// TestNoGoNames: the reference speaks of keys, not of the Go fields and
// types behind them: no field name of more than one word (UploadMinRate)
// and no config type (ClusterConfig) is left in its text.
func TestNoGoNames(t *testing.T) {
	sections, err := configref.Keys(root, config)
	if err != nil {
		t.Fatal(err)
	}
	md := configref.Markdown(sections)
	multi := regexp.MustCompile(`^[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+$`)
	seen := map[reflect.Type]bool{}
	var walk func(rt reflect.Type)
	walk = func(rt reflect.Type) {
		if seen[rt] {
			return
		}
		seen[rt] = true
		if name, _, _ := strings.Cut(rt.Name(), "["); strings.HasSuffix(name, "Config") && name != "Config" && regexp.MustCompile(`\b`+name+`\b`).MatchString(md) {
			t.Errorf("the reference names the Go type %s", name)
		}
		for i := range rt.NumField() {
			f := rt.Field(i)
			if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); !f.IsExported() || tag == "-" {
				continue
			}
			if multi.MatchString(f.Name) && regexp.MustCompile(`\b`+f.Name+`\b`).MatchString(md) {
				t.Errorf("the reference names the Go field %s.%s", rt.Name(), f.Name)
			}
			ft := deref(f.Type)
			for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Map {
				ft = deref(ft.Elem())
			}
			if keyed(ft) {
				walk(ft)
			}
		}
	}
	walk(config)
}
