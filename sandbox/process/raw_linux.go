package process

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

var _ sandbox.RawStarter = (*Driver)(nil)

// StartRaw starts one worker of spec as Deploy would (the same checks,
// dependencies, sandbox and init message) but outside any deployment, and
// sends it nothing: the conformance kit speaks the protocol with it
// directly. The worker counts against no pool and is not stopped by Close;
// the caller must Wait for it.
func (d *Driver) StartRaw(ctx context.Context, spec sandbox.Spec) (*sandbox.RawWorker, error) {
	name := spec.Service
	if name == "" {
		name = "service"
	}
	fail := func(err error) (*sandbox.RawWorker, error) {
		return nil, fmt.Errorf("start worker of %s: %w", name, err)
	}
	mode, module, tmpl, err := d.workerTemplate(ctx, spec, name, "")
	if err != nil {
		return fail(err)
	}
	dep, err := d.newDeployment(spec, name, mode, module, tmpl)
	if err != nil {
		return fail(err)
	}
	sp, err := tmpl.Start()
	if err != nil {
		return fail(err)
	}
	var once sync.Once
	var status int
	var how string
	return &sandbox.RawWorker{
		Init:   bytes.TrimSuffix(dep.init, []byte("\n")),
		Stdin:  sp.Stdin,
		Stdout: sp.Stdout,
		Stderr: sp.Stderr,
		Wait: func() (int, string) {
			once.Do(func() {
				state, err := sp.Wait()
				var ws syscall.WaitStatus
				if err == nil && state != nil {
					ws, _ = state.Sys().(syscall.WaitStatus)
				}
				switch {
				case err != nil || state == nil:
					status, how = -1, fmt.Sprintf("lost: %v", err)
				case ws.Signaled():
					status, how = -1, fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
				default:
					status, how = ws.ExitStatus(), fmt.Sprintf("exited with status %d", ws.ExitStatus())
				}
				sp.Stdin.Close()
				sp.Stdout.Close()
				sp.Stderr.Close()
				_ = sp.Release(2 * time.Second)
			})
			return status, how
		},
		Kill: sp.Kill,
	}, nil
}
