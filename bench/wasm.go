package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	extism "github.com/extism/go-sdk"
	"github.com/tetratelabs/wazero"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/wasm"
)

// reactorWasm is the echo reactor of the wasm driver's tests: the smallest
// guest of Andromeda's reactor ABI, its output is its input.
const reactorWasm = "../sandbox/wasm/testdata/reactor.wasm"

// wasmDriver is a warm reactor call through the wasm driver
// (Deployment.Invoke: pool, memory budget, deadline, usage).
func wasmDriver(ctx context.Context, e *env) (func() error, func(), error) {
	d := wasm.New(wasm.Config{})
	dir, entry := filepath.Split(reactorWasm)
	dep, err := d.Deploy(ctx, sandbox.Spec{Service: "bench-echo", Dir: dir, Entry: entry, Mode: sandbox.ModeServer, Limits: sandbox.Limits{Concurrency: 1}})
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	call := func() error {
		exit, err := dep.Invoke(ctx, input)
		if err != nil {
			return err
		}
		if exit.Outcome != sandbox.OK || !bytes.Equal(exit.Output, input) {
			return fmt.Errorf("driver answered %s %q (%s)", exit.Outcome, exit.Output, exit.Detail)
		}
		return nil
	}
	return call, func() { dep.Stop(ctx); d.Close() }, nil
}

// bareWazero calls the same reactor's exports directly on wazero (alloc,
// write the input, invoke, copy the output out) with no deadline: the
// floor any wasm host pays.
func bareWazero(ctx context.Context, e *env) (func() error, func(), error) {
	bin, err := os.ReadFile(reactorWasm)
	if err != nil {
		return nil, nil, err
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig())
	mod, err := rt.Instantiate(ctx, bin)
	if err != nil {
		rt.Close(ctx)
		return nil, nil, err
	}
	alloc, invoke := mod.ExportedFunction("andromeda_alloc"), mod.ExportedFunction("andromeda_invoke")
	stack := make([]uint64, 2)
	call := func() error {
		stack[0] = uint64(len(input))
		if err := alloc.CallWithStack(ctx, stack); err != nil {
			return err
		}
		ptr := uint32(stack[0])
		if !mod.Memory().Write(ptr, input) {
			return fmt.Errorf("input out of memory")
		}
		stack[0], stack[1] = uint64(ptr), uint64(len(input))
		if err := invoke.CallWithStack(ctx, stack); err != nil {
			return err
		}
		out, ok := mod.Memory().Read(uint32(stack[0]>>32), uint32(stack[0]))
		if !ok || !bytes.Equal(out, input) {
			return fmt.Errorf("bare wazero answered %q", out)
		}
		_ = append([]byte(nil), out...) // the copy a host makes of its output
		return nil
	}
	return call, func() { rt.Close(ctx) }, nil
}

// extismRow is a warm call of Extism's Go SDK to a plugin that echoes its
// input, with a timeout (Extism then compiles with close-on-context-done,
// as Andromeda does) or without.
func extismRow(timeout bool) func(ctx context.Context, e *env) (func() error, func(), error) {
	return func(ctx context.Context, e *env) (func() error, func(), error) {
		m := extism.Manifest{Wasm: []extism.Wasm{extism.WasmFile{Path: "testdata/extism-echo.wasm"}}}
		if timeout {
			m.Timeout = uint64((30 * time.Second).Milliseconds())
		}
		compiled, err := extism.NewCompiledPlugin(ctx, m, extism.PluginConfig{}, nil)
		if err != nil {
			return nil, nil, err
		}
		p, err := compiled.Instance(ctx, extism.PluginInstanceConfig{})
		if err != nil {
			compiled.Close(ctx)
			return nil, nil, err
		}
		call := func() error {
			rc, out, err := p.CallWithContext(ctx, "echo", input)
			if err != nil {
				return err
			}
			if rc != 0 || !bytes.Equal(out, input) {
				return fmt.Errorf("extism answered %d %q", rc, out)
			}
			return nil
		}
		return call, func() { p.Close(ctx); compiled.Close(ctx) }, nil
	}
}
