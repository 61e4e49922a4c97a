package sandboxtest

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// Kit is what Certify needs: the driver, already tested, and the Spec that
// deploys the runtime under certification, which must implement the guest
// protocol (see the package comment).
type Kit struct {
	Driver sandbox.Driver
	// Spec returns the Spec deploying the guest in mode; zero limits are
	// filled in as for Harness.Spec.
	Spec func(mode sandbox.Mode) sandbox.Spec
	// Started and CancelGrace are Harness.Started and Harness.CancelGrace.
	// CancelGrace is also how long a worker has to answer a cancel in the
	// protocol checks (at least a second, for a busy machine).
	Started     func(dep sandbox.Deployment) int64
	CancelGrace time.Duration
	// Checks, when not empty, are the only checks to run: names as Check
	// has them (server/log, protocol/cancel) or a case's name alone (log:
	// in every mode). A mode's deploy runs when one of its cases does.
	Checks []string
	// Modes are the modes to certify; default server and command.
	Modes []sandbox.Mode
}

// runs reports whether k runs the check named mode/name.
func (k Kit) runs(mode, name string) bool {
	return len(k.Checks) == 0 || slices.Contains(k.Checks, name) || slices.Contains(k.Checks, mode+"/"+name)
}

// Certify certifies a language runtime outside `go test` (this is
// `andromeda conformance DIR`): it runs the kit cases, the protocol's part
// of the suite, in server and command mode against k.Driver, then the
// protocol checks, which speak the runtime protocol with one worker
// directly (k.Driver must be a sandbox.RawStarter), and hands each
// check's Check to each as it ends. The error names the checks that
// failed; a mode whose deployment fails runs no case.
func Certify(ctx context.Context, k Kit, each func(Check)) error {
	h := Harness{Started: k.Started, CancelGrace: k.CancelGrace, Modes: k.Modes}.withDefaults()
	var failed []string
	for _, mode := range h.Modes {
		if !slices.ContainsFunc(cases, func(c kitCase) bool { return c.where != inSuite && k.runs(string(mode), c.name) }) {
			continue
		}
		s := &suite{h: h, d: k.Driver, mode: mode, spec: withDefaults(k.Spec(mode), mode)}
		r := &report{each: each, name: string(mode) + "/deploy"}
		var dep sandbox.Deployment
		r.run(func() {
			var err error
			if dep, err = k.Driver.Deploy(ctx, s.spec); err != nil {
				r.Fatalf("Deploy(%s) = %v", s.spec.Entry, err)
			}
		})
		if r.failed {
			failed = append(failed, r.name)
			continue
		}
		s.dep = dep
		for _, c := range cases {
			if c.where == inSuite || !k.runs(string(mode), c.name) {
				continue
			}
			r := &report{each: each, name: string(mode) + "/" + c.name}
			if r.run(func() { c.run(r, s) }); r.failed {
				failed = append(failed, r.name)
			}
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = dep.Stop(sctx)
		cancel()
	}
	rs, _ := k.Driver.(sandbox.RawStarter)
	p := &rawSuite{rs: rs, spec: withDefaults(k.Spec(sandbox.ModeServer), sandbox.ModeServer), grace: k.CancelGrace}
	for _, c := range protocolChecks {
		if !k.runs("protocol", c.name) {
			continue
		}
		r := &report{each: each, name: "protocol/" + c.name}
		r.run(func() {
			if rs == nil {
				r.Fatalf("driver %s cannot start a worker on its own (sandbox.RawStarter), which the protocol checks need", k.Driver.Name())
			}
			c.run(r, p)
		})
		if r.failed {
			failed = append(failed, r.name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d checks failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

// Check is the result of one case of Certify.
type Check struct {
	Name   string        // mode/case, as server/echo
	OK     bool          // the case passed
	Failed []string      // what failed, when it did not
	Took   time.Duration // how long the case took
	Notes  []string      // remarks of a case that passed
}

// String is the check as `andromeda conformance` prints it: a line "ok"
// or "FAIL" with what failed, the name and the time it took, then a
// "note" line for each remark.
func (c Check) String() string {
	var b strings.Builder
	if !c.OK {
		fmt.Fprintf(&b, "FAIL %-28s %s (%v)\n", c.Name, strings.Join(c.Failed, "; "), c.Took)
		return b.String()
	}
	fmt.Fprintf(&b, "ok   %-28s (%v)\n", c.Name, c.Took)
	for _, n := range c.Notes {
		fmt.Fprintf(&b, "note %-28s %s\n", c.Name, n)
	}
	return b.String()
}

// report runs one case of Certify and hands on its Check: a T that ends
// the case on Fatalf, as *testing.T does.
type report struct {
	each    func(Check)
	name    string
	mu      sync.Mutex
	failed  bool
	errs    []string
	notes   []string
	cleanup []func()
}

func (r *report) Helper() {}

func (r *report) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *report) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *report) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *report) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanup = append(r.cleanup, f)
}

// run runs f on a goroutine of its own (Fatalf ends it), then the cleanups,
// newest first, and hands on the result.
func (r *report) run(f func()) {
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
	r.mu.Lock()
	cleanup := slices.Clone(r.cleanup)
	r.mu.Unlock()
	for _, f := range slices.Backward(cleanup) {
		f()
	}
	c := Check{Name: r.name, OK: !r.failed, Took: time.Since(start).Round(100 * time.Microsecond)}
	if r.failed {
		c.Failed = r.errs
	} else {
		c.Notes = r.notes
	}
	if r.each != nil {
		r.each(c)
	}
}
