package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// DefaultEntries is the entry Conformance uses for each language when none
// is given.
var DefaultEntries = map[string]string{LangNode: "index.js", LangPython: "main.py", LangExec: "run"}

// Conformance certifies a language runtime: it deploys the service in dir
// (which must implement the guest protocol of the sandboxtest package) as
// lang with entry ("" for DefaultEntries[lang]) and runs the protocol part
// of the driver conformance suite against it, through this driver and its
// sandbox, in server and command mode: the init/ready handshake, echo of
// JSON values, the input's pass-through, a 1 MiB input, Unicode, noop and
// the empty output, a thrown error (crashed, the worker lives on), several
// invocations in flight at once, cancel, an exit (crashed, the worker is
// restarted), timeout, and a graceful shutdown. For a new language,
// dir holds an executable (lang "exec") that starts its shim on the
// service. Each check prints one line to out ("ok", "FAIL" or "note");
// the error lists the checks that failed. This is `andromeda conformance
// DIR`.
func (d *Driver) Conformance(ctx context.Context, dir, lang, entry string, out io.Writer) error {
	if entry == "" {
		entry = DefaultEntries[lang]
	}
	c := &certifier{d: d, out: out}
	for _, mode := range []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand} {
		spec := sandbox.Spec{
			Service: "conformance", Dir: dir, Entry: entry, Language: lang, Mode: mode,
			Limits: sandbox.Limits{Memory: 256 << 20, Timeout: 10 * time.Second, Concurrency: 4},
		}
		c.mode = mode
		c.run(ctx, spec)
	}
	if len(c.failed) > 0 {
		return fmt.Errorf("conformance of %s (%s): %d checks failed: %s", dir, lang, len(c.failed), strings.Join(c.failed, ", "))
	}
	return nil
}

// certifier runs the checks and keeps their results.
type certifier struct {
	d      *Driver
	out    io.Writer
	mode   sandbox.Mode
	dep    sandbox.Deployment
	runs   atomic.Int64
	failed []string
}

func (c *certifier) report(name string, start time.Time, err error) {
	full := string(c.mode) + "/" + name
	took := time.Since(start).Round(100 * time.Microsecond)
	if err != nil {
		c.failed = append(c.failed, full)
		fmt.Fprintf(c.out, "FAIL %-28s %v (%v)\n", full, err, took)
		return
	}
	fmt.Fprintf(c.out, "ok   %-28s (%v)\n", full, took)
}

func (c *certifier) note(name, msg string) {
	fmt.Fprintf(c.out, "note %-28s %s\n", string(c.mode)+"/"+name, msg)
}

// input is the contract Input for one guest operation.
func (c *certifier) input(op map[string]any) contract.Input {
	raw, _ := json.Marshal(op)
	return contract.Input{RunID: fmt.Sprintf("conformance-%d", c.runs.Add(1)), Service: "conformance",
		Trigger: contract.Trigger{Kind: "manual"}, Message: raw, State: map[string]json.RawMessage{}, Config: map[string]any{}}
}

func (c *certifier) call(ctx context.Context, in contract.Input, timeout time.Duration) (sandbox.Result, error) {
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	return sandbox.Call(ctx, c.dep, in, timeout)
}

// echo checks that data comes back from the echo operation unchanged.
func (c *certifier) echo(ctx context.Context, data any) error {
	raw, err := json.Marshal(data)
	if rm, ok := data.(json.RawMessage); ok {
		raw, err = rm, nil
	}
	if err != nil {
		return err
	}
	in := c.input(nil)
	in.Message = json.RawMessage(`{"do":"echo","data":` + string(raw) + `}`)
	r, err := c.call(ctx, in, 0)
	if err != nil {
		return err
	}
	if r.Outcome != sandbox.OK || len(r.Output.Emit) != 1 || r.Output.Emit[0].Topic != "echo" {
		return fmt.Errorf("outcome %s (%s), output %.200s: want one emit to topic echo", r.Outcome, r.Error, r.Raw)
	}
	if !sameJSON(r.Output.Emit[0].Message, raw) {
		return fmt.Errorf("echo of %.100s returned %.100s", raw, r.Output.Emit[0].Message)
	}
	return nil
}

func sameJSON(a, b []byte) bool {
	var va, vb any
	return json.Unmarshal(a, &va) == nil && json.Unmarshal(b, &vb) == nil && reflect.DeepEqual(va, vb)
}

// do runs op and checks its outcome and, when want is not empty, that the
// detail or noop reason contains it.
func (c *certifier) do(ctx context.Context, op map[string]any, timeout time.Duration, outcome sandbox.Outcome, want string) error {
	r, err := c.call(ctx, c.input(op), timeout)
	if err != nil {
		return err
	}
	if r.Outcome != outcome {
		return fmt.Errorf("outcome %s (%.300s), want %s", r.Outcome, r.Error, outcome)
	}
	if want != "" && !strings.Contains(r.Error+r.Output.Noop, want) {
		return fmt.Errorf("detail %q, want it to contain %q", r.Error+r.Output.Noop, want)
	}
	return nil
}

func (c *certifier) run(ctx context.Context, spec sandbox.Spec) {
	start := time.Now()
	dep, err := c.d.Deploy(ctx, spec)
	c.report("deploy (init, ready)", start, err)
	if err != nil {
		return
	}
	c.dep = dep
	spawned := func() int64 {
		if sp, ok := dep.(interface{ workersStarted() int64 }); ok {
			return sp.workersStarted()
		}
		return -1
	}
	check := func(name string, f func() error) {
		start := time.Now()
		c.report(name, start, f())
	}
	check("echo", func() error {
		for _, v := range []any{map[string]any{"a": 1.0, "b": []any{true, nil, "x"}}, "plain", -42.5, []any{}, json.RawMessage(`{"deep":[[[[[[{"k":[1,2]}]]]]]]}`)} {
			if err := c.echo(ctx, v); err != nil {
				return err
			}
		}
		return nil
	})
	check("input", func() error {
		in := c.input(map[string]any{"do": "input"})
		in.Trigger = contract.Trigger{Kind: "event", Topic: "t", At: "2025-01-02T03:04:05Z"}
		in.State = map[string]json.RawMessage{"counter": json.RawMessage(`7`)}
		in.Config = map[string]any{"threshold": "0.02"}
		r, err := c.call(ctx, in, 0)
		if err != nil {
			return err
		}
		if r.Outcome != sandbox.OK || len(r.Output.Emit) != 1 {
			return fmt.Errorf("outcome %s (%s), want one emit", r.Outcome, r.Error)
		}
		var got contract.Input
		if err := json.Unmarshal(r.Output.Emit[0].Message, &got); err != nil {
			return err
		}
		if got.RunID != in.RunID || got.Trigger != in.Trigger || !sameJSON(got.State["counter"], []byte("7")) || got.Config["threshold"] != "0.02" {
			return fmt.Errorf("the guest saw %s", r.Output.Emit[0].Message)
		}
		return nil
	})
	check("large-input", func() error { return c.echo(ctx, strings.Repeat("andromeda-Ω-", 1<<20/13)) })
	check("unicode", func() error {
		return c.echo(ctx, []string{"héllo", "日本語", "emoji 🚀 👩‍👩‍👧", "nul \x00", "controls \t\n\r\x1f", "separators \u2028\u2029", `quote " back \ slash`, "<html> & 'x'"})
	})
	check("noop", func() error {
		return c.do(ctx, map[string]any{"do": "noop", "reason": "conformance"}, 0, sandbox.Noop, "conformance")
	})
	check("empty-output", func() error {
		return c.do(ctx, map[string]any{"do": "nothing"}, 0, sandbox.Error, contract.ErrNoReason.Error())
	})
	check("thrown-error", func() error {
		before := spawned()
		if err := c.do(ctx, map[string]any{"do": "panic"}, 0, sandbox.Crashed, "conformance panic"); err != nil {
			return err
		}
		if err := c.echo(ctx, "after the error"); err != nil {
			return fmt.Errorf("after the error: %w", err)
		}
		if spec.Mode == sandbox.ModeServer && spawned() != before {
			c.note("thrown-error", "the worker died on a thrown error; a shim should report it with an error message and live on")
		}
		return nil
	})
	check("concurrent", func() error {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Go(func() {
				if err := c.echo(ctx, fmt.Sprintf("caller %d %s", i, strings.Repeat("x", i*50))); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		return errors.Join(<-errs)
	})
	check("cancel", func() error {
		before := spawned()
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := sandbox.Call(cctx, c.dep, c.input(map[string]any{"do": "sleep"}), 10*time.Second)
		if !errors.Is(err, context.Canceled) {
			return fmt.Errorf("a cancelled call returned %v, want context.Canceled", err)
		}
		time.Sleep(c.d.cfg.CancelGrace + 100*time.Millisecond)
		if err := c.echo(ctx, "after the cancel"); err != nil {
			return err
		}
		if spec.Mode == sandbox.ModeServer && spawned() != before {
			c.note("cancel", "the worker was killed: it did not end the invocation after its cancel message (acceptable for a runtime that cannot interrupt a handler)")
		}
		return nil
	})
	check("exit", func() error {
		if err := c.do(ctx, map[string]any{"do": "exit", "code": 3}, 0, sandbox.Crashed, "3"); err != nil {
			return err
		}
		return c.echo(ctx, "after the exit")
	})
	check("timeout", func() error {
		return c.do(ctx, map[string]any{"do": "spin"}, 300*time.Millisecond, sandbox.Timeout, "")
	})
	check("shutdown", func() error {
		// A fresh deployment, idle: it must exit on shutdown, not be killed.
		dep, err := c.d.Deploy(ctx, spec)
		if err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		start := time.Now()
		if err := dep.Stop(sctx); err != nil {
			return err
		}
		if took := time.Since(start); took > time.Second {
			return fmt.Errorf("an idle worker took %v to exit after shutdown", took)
		}
		return nil
	})
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = dep.Stop(sctx)
}
