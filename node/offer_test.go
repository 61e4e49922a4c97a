package node_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/node"
)

// TestOfferConfigErrors: the offer section is strict, each problem named
// by its path.
func TestOfferConfigErrors(t *testing.T) {
	_, err := node.ParseConfig([]byte(`
offer:
  properties: {andromeda.node.name: x, "bad key": 1, region: eu}
  prices: {cpu_seconds: -1, "CPU": 1, run: 0.001}
  colour: blue
`), false)
	if err == nil {
		t.Fatal("ParseConfig of a bad offer section = nil")
	}
	_, err2 := node.ParseConfig([]byte("offer:\n  properties: {andromeda.node.name: x, \"bad key\": 1}\n  prices: {cpu_seconds: -1, CPU: 1}\n"), false)
	for _, want := range []string{
		"offer.properties.andromeda.node.name: keys starting with andromeda. are the node's own",
		"offer.properties.bad key: the key must match",
		"offer.prices.cpu_seconds: must be a finite number ≥ 0",
		"offer.prices.CPU: the key must be a usage counter",
		"offer.currency: required with offer.prices",
	} {
		if err2 == nil || !strings.Contains(err2.Error(), want) {
			t.Errorf("ParseConfig error = %v, want %q", err2, want)
		}
	}
	if !strings.Contains(err.Error(), `colour: unknown field`) {
		t.Errorf("ParseConfig error = %v, want the unknown field named", err)
	}
	if _, err := node.ParseConfig([]byte("offer: {properties: {region: eu}, prices: {run: 0.001}, currency: GLM}\n"), false); err != nil {
		t.Errorf("ParseConfig of a good offer section = %v", err)
	}
}

// TestReadDescriptor: descriptors are strict; bad paths are refused with
// the field and the rule.
func TestReadDescriptor(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("bin/rt", "#!/bin/sh\n", 0o755)
	write("bin/private", "#!/bin/sh\n", 0o700)
	write("guest/g.toy", "guest\n", 0o644)
	const tail = "\nconformance: guest/g.toy\n"
	d, err := node.ReadDescriptor(write("good.yaml", "name: good\nversion: 1.0.0\npath: bin/rt\nargs: [-q]\nmodes: [server]"+tail, 0o644))
	if err != nil || d.Path != filepath.Join(dir, "bin", "rt") || d.Conformance != filepath.Join(dir, "guest", "g.toy") {
		t.Errorf("ReadDescriptor(good) = %+v, %v", d, err)
	}
	for name, c := range map[string]struct{ body, want string }{
		"missing":   {"path: bin/nope", "path: " + filepath.Join(dir, "bin", "nope") + " does not exist"},
		"private":   {"path: bin/private", "must be executable by others"},
		"dir":       {"path: bin", "is a directory"},
		"escape":    {"path: ../rt", "must be absolute, or relative to the descriptor's directory and inside it"},
		"nopath":    {"args: []", "path: required"},
		"badmode":   {"path: bin/rt\nmodes: [server, server]", "modes[1]: must be server or command, each once"},
		"badlang":   {"path: bin/rt\nlanguages: [Toy]", "languages[0]: must match"},
		"typo":      {"path: bin/rt\nargz: []", `argz: unknown field`},
		"wrongname": {"path: bin/rt", `name: must be the file's name "wrongname", got "x"`},
	} {
		n := name
		if name == "wrongname" {
			n = "x"
		}
		body := "name: " + n + "\nversion: 1.0.0\n" + c.body + tail
		_, err := node.ReadDescriptor(write(name+".yaml", body, 0o644))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), name+".yaml") {
			t.Errorf("ReadDescriptor(%s) = %v, want %q", name, err, c.want)
		}
	}
}
