package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

// TestNormalizeArgs keeps the command lines of the standard flag package
// working: one-dash long flags, and flags before a group's subcommand.
func TestNormalizeArgs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ls -json", "ls --json"},
		{"ls --json", "ls --json"},
		{"runs -limit 5 echo -since=1h", "runs --limit 5 echo --since=1h"},
		{"runs echo -all -json", "runs echo --all --json"},
		{"token -name create create", "token create --name create"},
		{"token --name ada --role operator create", "token create --name ada --role operator"},
		{"deps -json ls greeter", "deps ls --json greeter"},
		{"fire greeter -input -json", "fire greeter --input -json"}, // a value, not a flag
		{"ls -h", "ls -h"},
		{"ls -help", "ls --help"},
		{"inspect -bogus", "inspect -bogus"}, // pflag says what is wrong
		{"inspect -- -json", "inspect -- -json"},
		{"store check -data d -json", "store check --data d --json"},
		{"__complete ls -j", "__complete ls -j"},
	} {
		root := (&cli{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}).root()
		got, err := normalizeArgs(root, strings.Fields(tc.in))
		if err != nil || !slices.Equal(got, strings.Fields(tc.want)) {
			t.Errorf("normalizeArgs(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestOneDashFlags runs commands written with one-dash flags end to end.
func TestOneDashFlags(t *testing.T) {
	dir := t.TempDir()
	key := dir + "/hub.key"
	out, _, err := runCLI(t, nil, "keys", "-json", "gen", key)
	if err != nil || !strings.Contains(out, `"public": "`+key+`.pub"`) {
		t.Fatalf("keys -json gen: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, nil, "attest", "-key", key, dir); err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("attest -key FILE DIR without a manifest: %v, want the manifest error", err)
	}
}
