package process

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// bareEchoEnv makes the test binary a bare JSON-lines echo child (the
// exec baseline of BenchmarkBareInvoke).
const bareEchoEnv = "ANDROMEDA_TEST_BARE_ECHO"

// bareEcho answers each line of standard input with one line naming the
// topic echo, as a child with no protocol, sandbox or shim would, and
// exits at the end of its input.
func bareEcho() {
	in := bufio.NewReaderSize(os.Stdin, 64<<10)
	out := bufio.NewWriter(os.Stdout)
	for {
		line, err := in.ReadSlice('\n')
		if err != nil {
			os.Exit(0)
		}
		out.WriteString(`{"topic":"echo","data":`)
		out.WriteString(strconv.Itoa(len(line)))
		out.WriteString("}\n")
		out.Flush()
	}
}

// bareChild is what BenchmarkBareInvoke and BenchmarkColdStartVsBare run
// for lang: the same interpreter as the worker, with a line echo and no
// shim, sandbox or protocol.
func bareChild(t testing.TB, lang string) *exec.Cmd {
	t.Helper()
	switch lang {
	case LangExec:
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), bareEchoEnv+"=1")
		return cmd
	case LangNode:
		tc := sharedDriver(t).toolchains(context.Background())[lang]
		return exec.Command(tc.Exe, "-e", `const rl = require("readline").createInterface({input: process.stdin});
rl.on("line", (l) => process.stdout.write('{"topic":"echo","data":' + l.length + '}\n'));`)
	case LangPython:
		tc := sharedDriver(t).toolchains(context.Background())[lang]
		return exec.Command(tc.Exe, "-c", `import sys
for l in sys.stdin:
    sys.stdout.write('{"topic":"echo","data":%d}\n' % len(l)); sys.stdout.flush()`)
	}
	t.Fatalf("no bare child for %s", lang)
	return nil
}

// startBare starts lang's bare child and returns its pipes.
func startBare(t testing.TB, lang string) (*exec.Cmd, io.WriteCloser, *bufio.Reader) {
	t.Helper()
	cmd := bareChild(t, lang)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stdin, bufio.NewReader(stdout)
}

// bareRoundTrip writes the bench input as one line and reads one line.
func bareRoundTrip(t testing.TB, stdin io.Writer, stdout *bufio.Reader) {
	if _, err := stdin.Write(append(benchInput[:len(benchInput):len(benchInput)], '\n')); err != nil {
		t.Fatal(err)
	}
	line, err := stdout.ReadString('\n')
	if err != nil || !strings.Contains(line, `"topic":"echo"`) {
		t.Fatalf("bare child answered %q, %v", line, err)
	}
}

// BenchmarkBareInvoke is the floor BenchmarkInvoke is judged against: the
// same 100-byte round trip to a child of the same interpreter reading and
// writing JSON lines on plain pipes with blocking reads (no sandbox, shim,
// protocol or usage).
func BenchmarkBareInvoke(b *testing.B) {
	for _, lang := range []string{LangExec, LangNode, LangPython} {
		b.Run(lang, func(b *testing.B) {
			requireLang(b, lang)
			cmd, stdin, stdout := startBare(b, lang)
			defer func() { stdin.Close(); cmd.Wait() }()
			bareRoundTrip(b, stdin, stdout)
			l := latencies{d: make([]time.Duration, 0, b.N)}
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				bareRoundTrip(b, stdin, stdout)
				l.d = append(l.d, time.Since(start))
			}
			b.StopTimer()
			l.report(b)
		})
	}
}

// BenchmarkColdStartVsBare times, in the same run and interleaved, a
// command-mode invocation (BenchmarkColdStart's iteration) and a bare
// fork+exec of the same interpreter answering one line, and reports both
// medians and their ratio.
func BenchmarkColdStartVsBare(b *testing.B) {
	requireSandbox(b)
	for _, lang := range []string{LangExec, LangNode, LangPython} {
		b.Run(lang, func(b *testing.B) {
			requireLang(b, lang)
			dir, entry := guest(b, lang)
			d := newDriver(b, testConfig())
			dep := deploy(b, d, sandbox.Spec{Service: "coldvs-" + lang, Dir: dir, Entry: entry, Language: lang, Mode: sandbox.ModeCommand})
			ctx := context.Background()
			var worker, bare latencies
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				exit, err := dep.Invoke(ctx, benchInput)
				worker.d = append(worker.d, time.Since(start))
				if err != nil || exit.Outcome != sandbox.OK {
					b.Fatalf("Invoke = %s (%s), %v", exit.Outcome, exit.Detail, err)
				}
				start = time.Now()
				cmd, stdin, stdout := startBare(b, lang)
				bareRoundTrip(b, stdin, stdout)
				bare.d = append(bare.d, time.Since(start))
				stdin.Close()
				cmd.Wait()
			}
			b.StopTimer()
			w, r := median(worker.d), median(bare.d)
			b.ReportMetric(float64(w.Nanoseconds()), "worker-p50-ns")
			b.ReportMetric(float64(r.Nanoseconds()), "bare-p50-ns")
			b.ReportMetric(float64(w)/float64(r), "ratio")
		})
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	for i := 1; i < len(s); i++ { // insertion sort: a few hundred at most
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}

// cpuTime is the user and system time of pid (the whole process) from
// /proc/PID/stat.
func cpuTime(t testing.TB, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command (which may hold spaces) end with ")".
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / hz
}

// selfCPU is this process's user and system time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleCPU warms a server-mode worker with 1000 invocations, then
// leaves it idle for a second per iteration and reports the CPU time both
// sides spent per second of idleness: the node (this process, which runs
// nothing else meanwhile) and the worker's process.
func BenchmarkIdleCPU(b *testing.B) {
	requireSandbox(b)
	for _, lang := range []string{LangExec, LangNode, LangPython} {
		b.Run(lang, func(b *testing.B) {
			requireLang(b, lang)
			dir, entry := guest(b, lang)
			d := newDriver(b, testConfig())
			dep := deploy(b, d, sandbox.Spec{Service: "idle-" + lang, Dir: dir, Entry: entry, Language: lang, Limits: sandbox.Limits{Concurrency: 1}})
			ctx := context.Background()
			for range 1000 {
				if exit, err := dep.Invoke(ctx, benchInput); err != nil || exit.Outcome != sandbox.OK {
					b.Fatalf("Invoke = %s (%s), %v", exit.Outcome, exit.Detail, err)
				}
			}
			pid := dep.waitWorker(5 * time.Second)
			var node, child, idle time.Duration
			b.ResetTimer()
			for range b.N {
				if _, err := dep.Invoke(ctx, benchInput); err != nil {
					b.Fatal(err)
				}
				n0, c0, t0 := selfCPU(), cpuTime(b, pid), time.Now()
				time.Sleep(time.Second)
				node += selfCPU() - n0
				child += cpuTime(b, pid) - c0
				idle += time.Since(t0)
			}
			b.StopTimer()
			b.ReportMetric(float64(node.Microseconds())/idle.Seconds(), "node-cpu-us/s")
			b.ReportMetric(float64(child.Microseconds())/idle.Seconds(), "worker-cpu-us/s")
		})
	}
}

// BenchmarkDriverTest is the driver's self-test as a node's start runs it:
// a new driver (no toolchain probed yet), its Test.
func BenchmarkDriverTest(b *testing.B) {
	requireSandbox(b)
	for range b.N {
		d := newDriver(b, testConfig())
		if err := d.Test(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
