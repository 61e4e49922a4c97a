package wasm

import (
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// hostModule is the module name of the functions the node provides to
// guests beside WASI (docs/wasm-abi.md, "Host functions").
const hostModule = "andromeda"

// Host function results (docs/wasm-abi.md).
const (
	usageAdded   = 0 // the amount was added to the run's counter
	usageRefused = 1 // the report was dropped (and counted): bad name, amount or pointer, too many names
)

// instantiateHost instantiates the andromeda host module in rt:
//
//	usage(name_ptr i32, name_len i32, amount f64) -> i32
//
// adds amount to the invocation's counter named by the UTF-8 bytes at
// [name_ptr, name_ptr+name_len) of the guest's memory, through the
// sandbox.Counters the call's context carries (see Invoke). It never traps:
// a report that cannot be read or is refused returns usageRefused.
func instantiateHost(ctx context.Context, rt wazero.Runtime) error {
	_, err := rt.NewHostModuleBuilder(hostModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostUsage),
			[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeF64},
			[]api.ValueType{api.ValueTypeI32}).
		WithParameterNames("name_ptr", "name_len", "amount").
		Export("usage").
		Instantiate(ctx)
	if err != nil {
		return fmt.Errorf("instantiate the %s host module: %w", hostModule, err)
	}
	return nil
}

// hostUsage is andromeda.usage.
func hostUsage(ctx context.Context, mod api.Module, stack []uint64) {
	ptr, size, amount := api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeF64(stack[2])
	stack[0] = api.EncodeI32(usageRefused)
	cs := sandbox.CountersOf(ctx)
	if cs == nil {
		return // a start function, outside any invocation
	}
	var name []byte
	if mem := mod.Memory(); mem != nil && size <= sandbox.MaxCounterName {
		name, _ = mem.Read(ptr, size)
	}
	if name == nil || !utf8.Valid(name) {
		cs.Drop()
		return
	}
	if cs.Add(string(name), amount) == nil {
		stack[0] = api.EncodeI32(usageAdded)
	}
}
