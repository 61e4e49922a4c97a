package docker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// The benchmarks compare the docker driver with what it is built from and
// what it replaces, on the exec conformance guest (a static Go worker):
//
//	go test ./sandbox/docker -run '^$' -bench . -benchtime 2s   # as root
//
// BenchmarkColdStart is command mode, a new container per invocation,
// beside a bare `docker run --rm` of the same image through the CLI and
// the process driver's command mode; BenchmarkInvoke is the warm round
// trip to a server-mode container beside a `docker exec` of the worker per
// call and the process driver's server mode. The driver runs with each of
// its transports (relay, attach). The figures are p50-ns and p99-ns of
// the time to the result, and calls/s.

// init lets the process driver re-execute this test binary as its sandbox
// init (it must run before anything else, as in the node's main), for the
// process driver's figures beside the docker driver's.
func init() { process.MaybeInit() }

// benchInput is a 100-byte contract input asking the guest to echo a
// string (the process and wasm drivers' benchmark input).
var benchInput = func() []byte {
	const head, tail = `{"run_id":"bench-1","service":"bench","trigger":{"kind":"manual"},"message":{"do":"echo","data":"`, `"}}`
	return []byte(head + strings.Repeat("x", 100-len(head)-len(tail)) + tail)
}()

// benchLoop runs call b.N times after one untimed call and reports the
// latency it returns: p50, p99 and calls per second. A call returns the
// time to its result, which may be less than its whole duration (a CLI's
// exit and the container's removal after the answer are not counted,
// as the drivers' shutdown of a command-mode worker overlaps the next
// invocation).
func benchLoop(b *testing.B, call func() (time.Duration, error)) {
	if _, err := call(); err != nil {
		b.Fatal(err)
	}
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		lat, err := call()
		if err != nil {
			b.Fatal(err)
		}
		d = append(d, lat)
	}
	b.StopTimer()
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(d[min(len(d)*99/100, len(d)-1)].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(len(d))/sum.Seconds(), "calls/s")
}

// invokeCall is one Deployment.Invoke of the echo input.
func invokeCall(dep sandbox.Deployment) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		start := time.Now()
		exit, err := dep.Invoke(context.Background(), benchInput)
		lat := time.Since(start)
		if err != nil || exit.Outcome != sandbox.OK || !strings.Contains(string(exit.Output), `"topic":"echo"`) {
			return 0, fmt.Errorf("echo = %s %s (%s), %v", exit.Outcome, exit.Output, exit.Detail, err)
		}
		return lat, nil
	}
}

// benchDeploy deploys spec on d, stopped when b ends.
func benchDeploy(b *testing.B, d sandbox.Driver, spec sandbox.Spec) sandbox.Deployment {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dep, err := d.Deploy(ctx, spec)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dep.Stop(ctx); err != nil {
			b.Errorf("Stop() = %v", err)
		}
	})
	return dep
}

// benchDocker deploys the guest image on a docker driver with transport
// in mode.
func benchDocker(b *testing.B, transport string, mode sandbox.Mode) sandbox.Deployment {
	cfg := testConfig()
	cfg.Transport = transport
	d := newDriver(b, cfg)
	img := guestImage(b, d).ID
	return benchDeploy(b, d, sandbox.Spec{Service: "bench-" + transport, Image: img, Mode: mode, Limits: sandbox.Limits{Concurrency: 1}})
}

// benchProcess deploys the guest binary as an exec service of the process
// driver in mode, skipping b (failing it under ANDROMEDA_CI_STRICT=1)
// where that driver cannot build its sandbox.
func benchProcess(b *testing.B, mode sandbox.Mode) sandbox.Deployment {
	sandboxtest.Require(b, os.Geteuid() == 0, "the process driver's sandbox needs root")
	if testEnv.guestErr != nil {
		b.Fatal(testEnv.guestErr)
	}
	d := process.New(process.Config{
		WorkDir:      b.TempDir(),
		CgroupParent: "/andromeda-docker-bench",
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	b.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := d.Test(ctx)
	sandboxtest.Require(b, err == nil, fmt.Sprintf("the process driver's self-test: %v", err))
	return benchDeploy(b, d, sandbox.Spec{
		Service: "bench-process", Dir: filepath.Dir(testEnv.guest), Entry: filepath.Base(testEnv.guest),
		Language: process.LangExec, Mode: mode, Limits: sandbox.Limits{Concurrency: 1},
	})
}

// requireCLI skips b (failing it under ANDROMEDA_CI_STRICT=1) without the
// docker command, the comparison's client.
func requireCLI(b *testing.B) string {
	cli, err := exec.LookPath("docker")
	sandboxtest.Require(b, err == nil, "the docker command (the CLI the driver is compared with) is not on PATH")
	return cli
}

// benchLabel labels the containers the CLI comparisons start, for a
// manual clean-up should a run be killed: docker rm -f $(docker ps -aq
// --filter label=andromeda.bench).
const benchLabel = "andromeda.bench=docker"

// cliCall starts the CLI with args, the guest's protocol on its standard
// streams: it sends init and one invoke of the echo input, and returns
// the time from the start to the result; then it closes the worker's
// standard input, which ends it, and waits for the CLI to exit.
func cliCall(cli string, args ...string) (time.Duration, error) {
	cmd := exec.Command(cli, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer cmd.Wait()
	defer stdin.Close()
	init := `{"type":"init","id":"init","protocol":1,"service":"bench","modules":[{"id":"main"}],"config":{},"max_line":8388608,"max_in_flight":1}` + "\n"
	invoke := `{"type":"invoke","id":"1","module":"main","input":` + string(benchInput) + "}\n"
	if _, err := io.WriteString(stdin, init+invoke); err != nil {
		return 0, fmt.Errorf("%s: %w (%s)", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	br := bufio.NewReader(stdout)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("%s: no result: %w (%s)", strings.Join(cmd.Args, " "), err, stderr.String())
		}
		if strings.Contains(line, `"type":"result"`) {
			if !strings.Contains(line, `"topic":"echo"`) {
				return 0, fmt.Errorf("%s: result %s, want the echo", strings.Join(cmd.Args, " "), line)
			}
			lat := time.Since(start)
			stdin.Close()
			io.Copy(io.Discard, br)
			if err := cmd.Wait(); err != nil {
				return 0, fmt.Errorf("%s: %w (%s)", strings.Join(cmd.Args, " "), err, stderr.String())
			}
			return lat, nil
		}
	}
}

// BenchmarkColdStart is one command-mode invocation to its result: a new
// container (created, started, attached), the worker's init and ready,
// the echo; beside `docker run --rm -i` of the same image through the CLI
// and the process driver's command mode (a new sandbox per invocation).
func BenchmarkColdStart(b *testing.B) {
	for _, tr := range []string{TransportRelay, TransportAttach} {
		b.Run("docker-"+tr, func(b *testing.B) {
			benchLoop(b, invokeCall(benchDocker(b, tr, sandbox.ModeCommand)))
		})
	}
	b.Run("docker-run-cli", func(b *testing.B) {
		cli := requireCLI(b)
		img := guestImage(b, newDriver(b, testConfig())).ID
		benchLoop(b, func() (time.Duration, error) {
			return cliCall(cli, "run", "--rm", "-i", "--network", "none", "--label", benchLabel, img)
		})
	})
	b.Run("process", func(b *testing.B) {
		benchLoop(b, invokeCall(benchProcess(b, sandbox.ModeCommand)))
	})
}

// BenchmarkInvoke is the warm round trip of the echo to a server-mode
// container, beside a `docker exec -i` of the worker in a running
// container of the same image per call (a new worker process each time,
// through the CLI) and the process driver's server mode.
func BenchmarkInvoke(b *testing.B) {
	for _, tr := range []string{TransportRelay, TransportAttach} {
		b.Run("docker-"+tr, func(b *testing.B) {
			benchLoop(b, invokeCall(benchDocker(b, tr, sandbox.ModeServer)))
		})
	}
	b.Run("docker-exec-cli", func(b *testing.B) {
		cli := requireCLI(b)
		img := guestImage(b, newDriver(b, testConfig())).ID
		// The container's own worker waits on its open standard input for
		// an init that never comes; each call runs another beside it.
		out, err := exec.Command(cli, "run", "-d", "-i", "--network", "none", "--label", benchLabel, img).Output()
		if err != nil {
			b.Fatalf("docker run -d: %v", err)
		}
		id := strings.TrimSpace(string(out))
		b.Cleanup(func() {
			if out, err := exec.Command(cli, "rm", "-f", id).CombinedOutput(); err != nil {
				b.Errorf("docker rm -f %s: %v: %s", id, err, out)
			}
		})
		benchLoop(b, func() (time.Duration, error) {
			return cliCall(cli, "exec", "-i", id, "/bin/guest")
		})
	})
	b.Run("process", func(b *testing.B) {
		benchLoop(b, invokeCall(benchProcess(b, sandbox.ModeServer)))
	})
}
