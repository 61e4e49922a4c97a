package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero/api"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// exportTest is the reactor ABI's optional self-test (docs/wasm-abi.md).
const exportTest = "andromeda_test"

var _ sandbox.Tester = (*deployment)(nil)

// Test runs a reactor's andromeda_test export, if it has one, in a fresh
// instance within the deployment's timeout: 0 passes; any other result is
// (ptr<<32)|len of the failure's message in the guest's memory. A trap or
// an exit fails it with the trap and the tail of its log. A command, or a
// reactor without the export, has no test: ran is false.
func (d *deployment) Test(ctx context.Context) (ran bool, err error) {
	if d.shape != reactor {
		return false, nil
	}
	def := d.compiled.ExportedFunctions()[exportTest]
	if def == nil {
		return false, nil
	}
	if len(def.ParamTypes()) != 0 || !bytes.Equal(def.ResultTypes(), []api.ValueType{api.ValueTypeI64}) {
		return true, fmt.Errorf("test %s: export %s has type (%s) -> (%s), want () -> (i64)", d.name, exportTest, types(def.ParamTypes()), types(def.ResultTypes()))
	}
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return true, fmt.Errorf("test %s: %w", d.name, sandbox.ErrStopped)
	}
	d.calls.Add(1)
	d.mu.Unlock()
	defer d.calls.Done()
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	stopKill := context.AfterFunc(d.killCtx, cancel)
	defer stopKill()
	inst := d.newInstance()
	defer func() {
		if r := recover(); r != nil {
			closeAfterPanic(inst)
			err = fmt.Errorf("test %s: driver panic: %v", d.name, r)
			return
		}
		inst.close()
	}()
	fail := func(phase string, cause error) (bool, error) {
		exit, ferr := d.failure(ctx, inst, phase, cause)
		if ferr != nil {
			return true, fmt.Errorf("test %s: %w", d.name, ferr)
		}
		return true, fmt.Errorf("test %s: %s: %s", d.name, exit.Outcome, exit.Detail)
	}
	if err := d.start(ctx, inst, nil); err != nil {
		return fail("_initialize", err)
	}
	res, err := inst.mod.ExportedFunction(exportTest).Call(ctx)
	if err != nil {
		return fail(exportTest, err)
	}
	if res[0] == 0 {
		return true, nil
	}
	ptr, n := uint32(res[0]>>32), uint32(res[0])
	msg, ok := inst.memory.Read(ptr, min(n, 4096))
	if !ok {
		return true, fmt.Errorf("test %s: %s failed with a message at %#x+%d, outside the guest's memory", d.name, exportTest, ptr, n)
	}
	if len(msg) == 0 {
		return true, errors.New("test " + d.name + ": failed")
	}
	return true, fmt.Errorf("test %s: %s", d.name, strings.ToValidUTF8(string(msg), "?"))
}
