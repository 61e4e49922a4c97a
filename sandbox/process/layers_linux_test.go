package process

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/jail"
)

// TestMissingLayers checks that a host without cgroups is not used with
// less isolation than the offer promises: the offer says which layers do
// not hold and why, Test and Deploy fail, and listing the layers in
// AllowMissing is the operator's explicit consent.
func TestMissingLayers(t *testing.T) {
	noCgroups := &host{
		iso:   jail.Isolation{Namespaces: true, UserNS: true, Seccomp: true, Basics: true},
		notes: []string{"cgroups: none on this host (test)"},
	}
	for _, c := range []struct {
		name  string
		allow []string
		fail  bool
	}{
		{"refused", nil, true},
		{"partly allowed", []string{LayerMemory}, true},
		{"allowed", []string{LayerMemory, LayerPids, LayerCPU}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.AllowMissing = c.allow
			d := New(cfg)
			d.hostOnce.Do(func() { d.h = noCgroups })
			d.tools = sharedDriver(t).toolchains(context.Background()) // detected once per test binary
			offer := d.Offer()
			for _, layer := range []string{LayerMemory, LayerPids, LayerCPU} {
				if offer.Isolation[layer] {
					t.Errorf("Offer().Isolation[%s] = true on a host without cgroups", layer)
				}
			}
			if !offer.Isolation[LayerPIDNS] || !strings.Contains(strings.Join(offer.Notes, "\n"), "cgroups: none on this host") {
				t.Errorf("offer %+v: want the namespaces held and the missing cgroups explained", offer)
			}
			err := d.checkLayers()
			if (err != nil) != c.fail {
				t.Fatalf("checkLayers() = %v, want failure %v", err, c.fail)
			}
			if c.fail {
				if !strings.Contains(err.Error(), LayerPids) || !strings.Contains(err.Error(), "AllowMissing") {
					t.Errorf("checkLayers() = %v, want it to name the missing layers and the way to allow them", err)
				}
				if err := d.Test(context.Background()); err == nil {
					t.Errorf("Test() = nil on a host missing layers")
				}
				_, err := d.Deploy(context.Background(), sandbox.Spec{Service: "x", Language: LangExec, Entry: "x", Dir: t.TempDir()})
				if err == nil || errors.Is(err, sandbox.ErrUnsupported) && !strings.Contains(err.Error(), "isolation layers missing") {
					t.Errorf("Deploy() = %v, want a refusal naming the missing layers", err)
				}
			}
		})
	}
}
