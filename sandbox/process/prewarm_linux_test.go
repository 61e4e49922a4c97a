package process

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestPrewarm checks Prewarm on real command-mode workers of every
// language: the prepared worker serves the next invocation, which reports
// no cold start, and only that one; a second Prewarm while one is
// prepared starts nothing; an invocation that comes while the spare
// starts waits for it rather than starting another; a spare no
// invocation takes within keep is shut down; one that died is replaced
// by a fresh worker; Stop ends a spare; server mode prewarms nothing.
func TestPrewarm(t *testing.T) {
	requireSandbox(t)
	ctx := context.Background()
	echo := []byte(`{"do":"echo","message":"warm"}`)
	invoke := func(t *testing.T, dep *deployment) sandbox.Exit {
		t.Helper()
		exit, err := dep.Invoke(ctx, echo)
		if err != nil || exit.Outcome != sandbox.OK {
			t.Fatalf("Invoke = %s (%s), %v", exit.Outcome, exit.Detail, err)
		}
		return exit
	}
	spawned := func(t *testing.T, dep *deployment, want int64) {
		t.Helper()
		if got := dep.spawned.Load(); got != want {
			t.Fatalf("workers started: %d, want %d", got, want)
		}
	}
	for _, lang := range []string{LangExec, LangNode, LangPython} {
		t.Run(lang, func(t *testing.T) {
			requireLang(t, lang)
			dir, entry := guest(t, lang)
			d := sharedDriver(t)
			dep := deploy(t, d, sandbox.Spec{Service: "prewarm-" + lang, Dir: dir, Entry: entry, Language: lang, Mode: sandbox.ModeCommand})
			base := dep.spawned.Load()

			if err := dep.Prewarm(ctx, time.Minute); err != nil {
				t.Fatal(err)
			}
			spawned(t, dep, base+1)
			if err := dep.Prewarm(ctx, time.Minute); err != nil {
				t.Fatal(err)
			}
			spawned(t, dep, base+1) // one spare at most
			if exit := invoke(t, dep); exit.Usage.Start != 0 {
				t.Errorf("the prewarmed invocation waited %v for its worker", exit.Usage.Start)
			}
			spawned(t, dep, base+1)
			// A spare serves one invocation: the next starts its own.
			if exit := invoke(t, dep); exit.Usage.Start <= 0 || exit.Usage.Start > exit.Usage.Wall {
				t.Errorf("a cold invocation reports a start of %v (wall %v)", exit.Usage.Start, exit.Usage.Wall)
			}
			spawned(t, dep, base+2)

			// An invocation that comes while the spare starts takes it.
			done := make(chan error, 1)
			go func() { done <- dep.Prewarm(ctx, time.Minute) }()
			for {
				dep.mu.Lock()
				sp := dep.spare
				dep.mu.Unlock()
				if sp != nil {
					break
				}
				time.Sleep(100 * time.Microsecond)
			}
			invoke(t, dep)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			spawned(t, dep, base+3)

			// Not taken within keep: shut down.
			if err := dep.Prewarm(ctx, 50*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			spawned(t, dep, base+4)
			waitNoWorker(t, dep)
			if exit := invoke(t, dep); exit.Usage.Start <= 0 {
				t.Errorf("the invocation after the spare was shut down reports a start of %v", exit.Usage.Start)
			}
			spawned(t, dep, base+5)

			// A spare that died is replaced.
			if err := dep.Prewarm(ctx, time.Minute); err != nil {
				t.Fatal(err)
			}
			dep.mu.Lock()
			w := dep.spare.w
			dep.mu.Unlock()
			w.kill("killed by the test", false)
			<-w.done
			invoke(t, dep)
			spawned(t, dep, base+7)
		})
	}

	t.Run("stop", func(t *testing.T) {
		dir, entry := guest(t, LangExec)
		dep := deploy(t, sharedDriver(t), sandbox.Spec{Service: "prewarm-stop", Dir: dir, Entry: entry, Language: LangExec, Mode: sandbox.ModeCommand})
		if err := dep.Prewarm(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := dep.Stop(sctx); err != nil {
			t.Fatal(err)
		}
		dep.mu.Lock()
		live := len(dep.live)
		dep.mu.Unlock()
		if live != 0 {
			t.Errorf("%d workers live after Stop", live)
		}
		if err := dep.Prewarm(ctx, time.Minute); !errors.Is(err, sandbox.ErrStopped) {
			t.Errorf("Prewarm after Stop = %v, want ErrStopped", err)
		}
	})

	t.Run("server", func(t *testing.T) {
		dir, entry := guest(t, LangExec)
		dep := deploy(t, sharedDriver(t), sandbox.Spec{Service: "prewarm-server", Dir: dir, Entry: entry, Language: LangExec, Mode: sandbox.ModeServer})
		base := dep.spawned.Load()
		if err := dep.Prewarm(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		spawned(t, dep, base)
		if exit := invoke(t, dep); exit.Usage.Start != 0 {
			t.Errorf("a warm invocation reports a start of %v", exit.Usage.Start)
		}
	})
}

// waitNoWorker waits until dep has no live worker.
func waitNoWorker(t *testing.T, dep *deployment) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		dep.mu.Lock()
		live := len(dep.live)
		dep.mu.Unlock()
		if live == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still live", live)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
