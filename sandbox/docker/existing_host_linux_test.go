package docker

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestPrlimitAs sets another uid's process limit from threads that take
// its uid, many times: the limit is set, and no thread of this process
// is left with that uid, the main thread included.
func TestPrlimitAs(t *testing.T) {
	sandboxtest.Require(t, os.Geteuid() == 0, "setting another uid's limits needs root")
	const uid = 45678
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := range 200 {
		n := uint64(1000 - i) // lower each time: raising a hard limit needs CAP_SYS_RESOURCE
		if err := prlimitAs(uid, cmd.Process.Pid, unix.RLIMIT_NPROC, &unix.Rlimit{Cur: n, Max: n}); err != nil {
			t.Fatalf("prlimitAs: %v", err)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", cmd.Process.Pid))
		want := regexp.MustCompile(fmt.Sprintf(`Max processes +%d +%d +processes`, n, n))
		if err != nil || !want.Match(b) {
			t.Fatalf("limits: %s (%v), want max processes %d", b, err, n)
		}
	}
	for range 200 {
		onThreadOfItsOwn(func() {
			if unix.Gettid() == unix.Getpid() {
				t.Errorf("onThreadOfItsOwn ran its function on the main thread, which cannot end")
			}
		})
	}
	// A thread that ended may linger a moment in /proc.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var bad []string
		tasks, _ := filepath.Glob("/proc/self/task/*/status")
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err == nil && strings.Contains(string(b), "Uid:\t45678") {
				bad = append(bad, f)
			}
		}
		if len(bad) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads left with uid %d: %v", uid, bad)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
