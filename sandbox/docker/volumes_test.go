package docker

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestVolumesOwnPaths: the paths the driver mounts in every container are
// reserved in manifests, and a volume at, inside or above one is refused
// naming the volume, before the engine is asked anything.
func TestVolumesOwnPaths(t *testing.T) {
	for _, p := range containerOwnPaths {
		if !slices.Contains(manifest.ReservedPaths, p) {
			t.Errorf("manifest.ReservedPaths %v lacks %s, which the docker driver mounts", manifest.ReservedPaths, p)
		}
	}
	d := New(Config{})
	dir := t.TempDir()
	for _, p := range []string{relayDir, relayDir + "/bin", "/tmp", "/service/x", "/runtime", "/"} {
		vols := []sandbox.Volume{{Name: "ok", Dir: dir, Path: "/data"}, {Name: "bad", Dir: dir, Path: p}}
		if _, err := d.volumeMounts(vols); err == nil || !strings.Contains(err.Error(), "volumes[1] bad") {
			t.Errorf("a volume at %s: %v, want an error naming volumes[1] bad", p, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the refused volumes' directory holds %d entries", len(entries))
	}
	if _, err := d.volumeMounts([]sandbox.Volume{{Name: "ok", Dir: dir, Path: "/.andromeda-relayx"}}); err != nil {
		t.Errorf("a volume at /.andromeda-relayx: %v", err)
	}
}
