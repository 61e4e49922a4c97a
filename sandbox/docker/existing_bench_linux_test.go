package docker

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// BenchmarkExisting is the exec conformance guest placed into a running
// container of the operator's (the Python test image), beside the
// benchmarks of new containers (BenchmarkColdStart, BenchmarkInvoke):
// command mode starts an exec session per invocation (its limits set, the
// gate released, init, ready, the echo); server mode is the warm round
// trip.
//
//	go test ./sandbox/docker -run '^$' -bench Existing -benchtime 2s   # as root
func BenchmarkExisting(b *testing.B) {
	for _, mode := range []sandbox.Mode{sandbox.ModeCommand, sandbox.ModeServer} {
		b.Run(string(mode), func(b *testing.B) {
			cli, img := pythonImage(b)
			if testEnv.guestErr != nil {
				b.Fatal(testEnv.guestErr)
			}
			d := newDriver(b, testConfig())
			_, name := operator(b, cli, img.ID, true)
			dep := benchDeploy(b, d, sandbox.Spec{
				Service: "bench-existing", Digest: "sha256:be4c4", Dir: filepath.Dir(testEnv.guest), Entry: filepath.Base(testEnv.guest),
				Language: "exec", Mode: mode, Container: name, Limits: sandbox.Limits{Concurrency: 1},
			})
			benchLoop(b, invokeCall(dep))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			if err := dep.Stop(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds()), "stop-ns")
		})
	}
}
