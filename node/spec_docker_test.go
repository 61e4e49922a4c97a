package node

import (
	"slices"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/decision"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestContainerSpec: what the docker driver reads of a Spec comes from the
// manifest and the decision, and only for a decision that picked docker.
func TestContainerSpec(t *testing.T) {
	pin := "ghcr.io/org/app@sha256:" + strings.Repeat("a", 64)
	load := func(t *testing.T, yaml string) *manifest.Service {
		t.Helper()
		m, err := manifest.Check([]byte("name: s\nversion: 1.0.0\n"+yaml), manifest.YAML)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct {
		name     string
		manifest string
		d        decision.Decision
		want     sandbox.Spec
	}{
		{
			"image service",
			"runtime: {driver: docker, image: '" + pin + "', command: [/bin/app, --serve]}\n",
			decision.Decision{Driver: "docker"},
			sandbox.Spec{Image: pin, Command: []string{"/bin/app", "--serve"}},
		},
		{
			"placed, refuse",
			"runtime: {driver: docker, language: node, image: '" + pin + "'}\n",
			decision.Decision{Driver: "docker", Container: "group1-node", Fallback: "refuse"},
			sandbox.Spec{Image: pin, Language: "node", Container: "group1-node", Fallback: sandbox.FallbackRefuse},
		},
		{
			"placed by a decision from before container_fallback",
			"runtime: {driver: docker, language: node, image: '" + pin + "'}\n",
			decision.Decision{Driver: "docker", Container: "group1-node"},
			sandbox.Spec{Image: pin, Language: "node", Container: "group1-node", Fallback: sandbox.FallbackNew},
		},
		{
			"process service on docker",
			"runtime: {driver: process, language: node, entry: main.js, command: [--verbose]}\n",
			decision.Decision{Driver: "docker"},
			sandbox.Spec{Language: "node", Entry: "main.js"},
		},
		{
			"process service on process",
			"runtime: {driver: process, language: node, entry: main.js}\n",
			decision.Decision{Driver: "process", Container: "ignored"},
			sandbox.Spec{Language: "node", Entry: "main.js"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := load(t, tc.manifest)
			got := sandbox.Spec{Language: m.Runtime.Language, Entry: m.Runtime.Entry}
			containerSpec(&got, tc.d, m)
			if got.Image != tc.want.Image || !slices.Equal(got.Command, tc.want.Command) || got.Container != tc.want.Container ||
				got.Fallback != tc.want.Fallback || got.Language != tc.want.Language || got.Entry != tc.want.Entry {
				t.Errorf("spec = %+v, want %+v", got, tc.want)
			}
		})
	}
}
