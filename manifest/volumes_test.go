package manifest

import (
	"strings"
	"testing"
)

// TestVolumePathReserved: a volume at or inside every reserved path is
// refused naming it, the docker relay's directory included; a path that
// only shares a prefix with one is not.
func TestVolumePathReserved(t *testing.T) {
	found := false
	for _, r := range ReservedPaths {
		found = found || r == "/.andromeda-relay"
		for _, p := range []string{r, r + "/x"} {
			if rule := volumePathRule(p); !strings.Contains(rule, "at or inside "+r) {
				t.Errorf("volume path %s: rule %q, want at or inside %s", p, rule, r)
			}
		}
		if rule := volumePathRule(r + "x"); rule != "" {
			t.Errorf("volume path %sx: rule %q, want none", r, rule)
		}
	}
	if !found {
		t.Errorf("ReservedPaths %v lacks /.andromeda-relay, where a docker container sees the relay", ReservedPaths)
	}
}
