package wasm

import (
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestConformance runs the driver conformance suite with the Go guest built
// as a command and as a reactor, each in server and command mode.
func TestConformance(t *testing.T) {
	requireGuests(t)
	for _, shape := range []string{"command", "reactor"} {
		t.Run(shape+"-guest", func(t *testing.T) {
			sandboxtest.Run(t, sandboxtest.Harness{
				Driver: func(t *testing.T) sandbox.Driver {
					d := New(Config{CacheDir: guests.cache})
					t.Cleanup(func() {
						if err := d.Close(); err != nil {
							t.Errorf("Close() = %v", err)
						}
					})
					return d
				},
				Spec: func(t *testing.T, mode sandbox.Mode) sandbox.Spec {
					return sandbox.Spec{
						Service:  "conformance-" + shape,
						Dir:      goGuest(shape),
						Entry:    "main.wasm",
						Language: "go",
						Mode:     mode,
					}
				},
			})
		})
	}
}
