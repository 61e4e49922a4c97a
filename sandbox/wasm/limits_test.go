package wasm

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// deployBinary writes bin to a service directory and deploys it.
func deployBinary(t *testing.T, d *Driver, bin []byte, spec sandbox.Spec) (*deployment, error) {
	t.Helper()
	spec.Dir, spec.Entry = t.TempDir(), "main.wasm"
	if spec.Service == "" {
		spec.Service = "limits"
	}
	if err := os.WriteFile(filepath.Join(spec.Dir, spec.Entry), bin, 0o644); err != nil {
		t.Fatal(err)
	}
	dep, err := d.Deploy(context.Background(), spec)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = dep.Stop(context.Background()) })
	return dep.(*deployment), nil
}

// startWith is a module whose _start runs code, after the sections in between
// (table, memory, global, in this order).
func startWith(between []byte, code ...[]byte) []byte {
	return wasmModule(typeSection(), section(3, vec([]byte{typeVoid})), between,
		section(7, vec(exportOf("_start", 0, 0))), section(10, vec(body(code...))))
}

// trapUnless traps unless the i32 on the stack equals want.
func trapUnless(want int32) []byte {
	return cat(i32c(want), []byte{0x47, 0x04, 0x40}, opUnreach, []byte{0x0b}) // i32.ne if unreachable end
}

// TestUnexportedMemoryRegression is the security review's module: a
// 42-byte command whose memory of 2048 pages is not exported. It passed
// Deploy and made wazero panic at instantiation; Deploy must refuse it, and
// with a limit that fits it must run.
func TestUnexportedMemoryRegression(t *testing.T) {
	bin, err := hex.DecodeString("0061736d0100000001040160000003020100050401008010070a01065f737461727400000a040102000b")
	if err != nil || len(bin) != 42 {
		t.Fatalf("module: %d bytes, %v", len(bin), err)
	}
	d := newDriver(t, Config{})
	_, err = deployBinary(t, d, bin, sandbox.Spec{Service: "regress", Mode: sandbox.ModeCommand})
	const want = "deploy regress: memory: module needs 2048 pages (128 MiB), the limit is 64 MiB"
	if err == nil || err.Error() != want {
		t.Fatalf("Deploy = %v, want %q", err, want)
	}
	dep, err := deployBinary(t, d, bin, sandbox.Spec{Service: "regress", Mode: sandbox.ModeCommand, Limits: sandbox.Limits{Memory: 128 << 20}})
	if err != nil {
		t.Fatalf("Deploy with a limit of 128 MiB = %v", err)
	}
	exit := invoke(t, dep, 10*time.Second, "")
	if exit.Outcome != sandbox.OK || exit.Usage.PeakMemory != 128<<20 {
		t.Errorf("Invoke = %s (%s), peak memory %d; want ok and 128 MiB", exit.Outcome, exit.Detail, exit.Usage.PeakMemory)
	}
}

// TestDeployLimits covers the rules of Deploy for memories, tables and
// imports, and the memory each instance reserves.
func TestDeployLimits(t *testing.T) {
	const limit = 1 << 20
	d := newDriver(t, Config{Memory: limit, MemoryBudget: 4 << 20})
	memory := func(min uint64, max int64) []byte { return section(sectionMemory, vec(lim(min, max))) }
	tables := func(l ...[]byte) []byte {
		var ts [][]byte
		for _, x := range l {
			ts = append(ts, cat([]byte{0x70}, x))
		}
		return section(sectionTable, vec(ts...))
	}
	withImport := func(imp []byte) []byte { // _start is function 0, or 1 after an imported one
		start := uint64(0)
		if info, err := readModule(wasmModule(section(sectionImport, vec(imp)))); err == nil && info.imports[0].kind == externFunc {
			start = 1
		}
		return wasmModule(typeSection(), section(sectionImport, vec(imp)), section(3, vec([]byte{typeVoid})),
			section(7, vec(exportOf("_start", 0, start))), section(10, vec(body())))
	}
	grow := func(delta int32) []byte { return cat(opRefNull, i32c(delta), opTableGrow0) }
	for _, c := range []struct {
		name        string
		bin         []byte
		memory      int64  // Limits.Memory; zero for the driver's 1 MiB
		want        string // substring of Deploy's error; empty if it deploys
		unsupported bool
		reserve     int64           // when it deploys
		outcome     sandbox.Outcome // when it deploys
	}{
		{name: "unexported memory within the limit", bin: startWith(memory(1, -1)), reserve: limit, outcome: sandbox.OK},
		{name: "unexported memory over the limit", bin: startWith(memory(17, -1)), want: "memory: module needs 17 pages (1088 KiB), the limit is 1 MiB"},
		{name: "minimum over the limit with a maximum", bin: startWith(memory(20, 30)), want: "module needs 20 pages"},
		{name: "maximum below the limit", bin: startWith(memory(1, 4)), reserve: 4 * pageSize, outcome: sandbox.OK},
		{name: "maximum above the limit is capped", reserve: limit, outcome: sandbox.OOM,
			bin: startWith(memory(1, 65536), []byte{0x03, 0x40}, i32c(1), opMemGrow, i32c(-1), []byte{0x47, 0x0d, 0, 0x0b}, opUnreach)},
		{name: "unexported maximum reached", reserve: 4 * pageSize, outcome: sandbox.OOM,
			bin: startWith(memory(1, 4), []byte{0x03, 0x40}, i32c(1), opMemGrow, i32c(-1), []byte{0x47, 0x0d, 0, 0x0b}, opUnreach)},
		{name: "no memory", bin: startWith(nil), reserve: 0, outcome: sandbox.OK},
		{name: "one instance over the budget", bin: startWith(memory(1, -1)), memory: 8 << 20, want: "an instance reserves 8 MiB (linear memory and tables), more than the node's memory budget for wasm guests (4 MiB)"},
		{name: "table without maximum cannot grow", bin: startWith(tables(lim(2, -1)), grow(1), trapUnless(-1)),
			reserve: 2 * tableElementSize, outcome: sandbox.OK},
		{name: "table with a maximum grows to it", bin: startWith(tables(lim(2, 10)), grow(8), trapUnless(2), grow(1), trapUnless(-1)),
			reserve: 10 * tableElementSize, outcome: sandbox.OK},
		{name: "table with a maximum past the allowance is fixed", bin: startWith(tables(lim(1, 1<<21)), grow(1), trapUnless(-1)),
			reserve: tableElementSize, outcome: sandbox.OK},
		{name: "table over the allowance", bin: startWith(tables(lim(1<<20+1, -1))), want: "table: module needs 1048577 table elements, the limit is 1048576"},
		{name: "imported memory", unsupported: true, want: "imports a memory (env.memory): a guest must define its own",
			bin: withImport(cat(name("env"), name("memory"), []byte{externMemory}, lim(1, -1)))},
		{name: "imported table", unsupported: true, want: "imports a table (wasi_snapshot_preview1.t): a guest can import only functions of wasi_snapshot_preview1",
			bin: withImport(cat(name("wasi_snapshot_preview1"), name("t"), []byte{externTable, 0x70}, lim(1<<27, -1)))},
		{name: "imported global", unsupported: true, want: "imports a global (env.g)",
			bin: withImport(cat(name("env"), name("g"), []byte{externGlobal, i32, 0}))},
		{name: "unknown WASI function", unsupported: true, want: "imports wasi_snapshot_preview1.sock_open: wasi_snapshot_preview1 has no such function",
			bin: withImport(importFunc("wasi_snapshot_preview1", "sock_open", typeVoid))},
		{name: "WASI function of the wrong type", unsupported: true, want: "imports wasi_snapshot_preview1.proc_exit with type () -> (), want (i32) -> ()",
			bin: withImport(importFunc("wasi_snapshot_preview1", "proc_exit", typeVoid))},
	} {
		t.Run(c.name, func(t *testing.T) {
			dep, err := deployBinary(t, d, c.bin, sandbox.Spec{Mode: sandbox.ModeCommand, Limits: sandbox.Limits{Memory: c.memory}})
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) || errors.Is(err, sandbox.ErrUnsupported) != c.unsupported {
					t.Fatalf("Deploy = %v, want an error containing %q (unsupported: %v)", err, c.want, c.unsupported)
				}
				return
			}
			if err != nil {
				t.Fatalf("Deploy = %v", err)
			}
			if dep.reserve != c.reserve {
				t.Errorf("an instance reserves %d bytes, want %d", dep.reserve, c.reserve)
			}
			if exit := invoke(t, dep, 5*time.Second, ""); exit.Outcome != c.outcome {
				t.Errorf("Invoke = %s (%s), want %s", exit.Outcome, exit.Detail, c.outcome)
			}
			if used, n := d.budget.reserved(); used != 0 || n != 0 {
				t.Errorf("after a command, the budget holds %d bytes in %d reservations, want none", used, n)
			}
		})
	}
}

// TestBoundTables checks the rewriting of tables' limits byte for byte.
func TestBoundTables(t *testing.T) {
	tableSec := func(l ...[]byte) []byte {
		var ts [][]byte
		for _, x := range l {
			ts = append(ts, cat([]byte{0x70}, x))
		}
		return section(sectionTable, vec(ts...))
	}
	custom := section(sectionCustom, name("after"), []byte{1, 2, 3})
	for _, c := range []struct {
		name       string
		in, out    []byte
		elems      uint64
		wantErrSub string
	}{
		{"no table", wasmModule(custom), wasmModule(custom), 0, ""},
		{"bounded tables kept", wasmModule(tableSec(lim(1, 5), lim(0, 0)), custom), wasmModule(tableSec(lim(1, 5), lim(0, 0)), custom), 5, ""},
		{"no maximum fixed at the minimum", wasmModule(tableSec(lim(300, -1)), custom), wasmModule(tableSec(lim(300, 300)), custom), 300, ""},
		{"a maximum past the allowance fixed", wasmModule(tableSec(lim(1, 1<<20), lim(1, 2)), custom),
			wasmModule(tableSec(lim(1, 1), lim(1, 2)), custom), 3, ""},
		{"the allowance in order", wasmModule(tableSec(lim(1, 1000), lim(1, -1), lim(0, 1<<20-1001))),
			wasmModule(tableSec(lim(1, 1000), lim(1, 1), lim(0, 1<<20-1001))), 1 << 20, ""},
		{"the allowance spent", wasmModule(tableSec(lim(1, 1000), lim(1, -1), lim(0, 1<<20-1000))),
			wasmModule(tableSec(lim(1, 1000), lim(1, 1), lim(0, 0))), 1001, ""},
		{"minimums over the allowance", wasmModule(tableSec(lim(1<<19, -1), lim(1<<19+1, -1))), nil, 0, "module needs 1048577 table elements"},
	} {
		t.Run(c.name, func(t *testing.T) {
			info, err := readModule(c.in)
			if err != nil {
				t.Fatalf("readModule = %v", err)
			}
			out, elems, err := rewriteModule(c.in, info)
			if c.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErrSub) {
					t.Fatalf("boundTables = %v, want an error containing %q", err, c.wantErrSub)
				}
				return
			}
			if err != nil || !bytes.Equal(out, c.out) || elems != c.elems {
				t.Errorf("boundTables = %x, %d, %v; want %x, %d", out, elems, err, c.out, c.elems)
			}
		})
	}
}

// TestInvokeRecoversPanics makes the driver panic at each phase of an
// invocation (through the deployment's test hook), and in a host function
// (the guests' source of random bytes): Invoke must report Crashed with the
// panic, release what the instance held, report the deployment unhealthy,
// and serve the next invocation.
func TestInvokeRecoversPanics(t *testing.T) {
	d := newDriver(t, Config{})
	for _, c := range []struct {
		module string
		mode   sandbox.Mode
		phases []string
	}{
		{"echo.wasm", sandbox.ModeCommand, []string{"instantiate", "_start"}},
		{"testdata/reactor.wasm", sandbox.ModeServer, []string{"instantiate", exportAlloc, exportInvoke}},
		{"testdata/reactor.wasm", sandbox.ModeCommand, []string{"instantiate", exportAlloc, exportInvoke}},
	} {
		for _, phase := range c.phases {
			t.Run(fmt.Sprintf("%s/%s/%s", c.module, c.mode, phase), func(t *testing.T) {
				dep := deployFile(t, d, c.module, sandbox.Spec{Mode: c.mode})
				dep.onPhase = func(p string) {
					if p == phase {
						panic("boom in " + p)
					}
				}
				exit := invoke(t, dep, 5*time.Second, `{"noop":"x"}`)
				if exit.Outcome != sandbox.Crashed || exit.Detail != "driver panic: boom in "+phase {
					t.Errorf("Invoke = %s (%s), want crashed with the panic", exit.Outcome, exit.Detail)
				}
				if used, n := d.budget.reserved(); used != 0 || n != 0 {
					t.Errorf("after a panic, the budget holds %d bytes in %d reservations, want none", used, n)
				}
				if ok, reason := dep.Health(); ok || !strings.Contains(reason, "boom in "+phase) {
					t.Errorf("Health() = %v, %q; want unhealthy with the panic", ok, reason)
				}
				dep.onPhase = nil
				if exit := invoke(t, dep, 5*time.Second, `{"noop":"x"}`); exit.Outcome != sandbox.OK {
					t.Errorf("Invoke after a panic = %s (%s), want ok", exit.Outcome, exit.Detail)
				}
				if ok, reason := dep.Health(); !ok {
					t.Errorf("Health() after a good invocation = false, %q", reason)
				}
			})
		}
	}
	t.Run("host function", func(t *testing.T) {
		saved := randReader
		randReader = panicReader{}
		defer func() { randReader = saved }()
		bin := wasmModule(typeSection(), section(sectionImport, vec(importFunc("wasi_snapshot_preview1", "random_get", typeRandom))),
			section(3, vec([]byte{typeVoid})), section(sectionMemory, vec(lim(1, -1))),
			section(7, vec(exportOf("_start", 0, 1))), section(10, vec(body(i32c(0), i32c(8), call(0), opDrop))))
		dep, err := deployBinary(t, d, bin, sandbox.Spec{Mode: sandbox.ModeCommand})
		if err != nil {
			t.Fatal(err)
		}
		exit := invoke(t, dep, 5*time.Second, "")
		if exit.Outcome != sandbox.Crashed || !strings.Contains(exit.Detail, "random source panicked") {
			t.Errorf("Invoke = %s (%s), want crashed with the panic", exit.Outcome, exit.Detail)
		}
	})
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("random source panicked") }

// TestAllocatorGuard instantiates a module whose initial memory is over the
// allocator's limit, which Deploy prevents: wazero panics when an allocator
// cannot give a memory its minimum, and Invoke must report it, not crash.
func TestAllocatorGuard(t *testing.T) {
	d := newDriver(t, Config{})
	dep, err := deployBinary(t, d, startWith(section(sectionMemory, vec(lim(2, -1)))), sandbox.Spec{Mode: sandbox.ModeCommand})
	if err != nil {
		t.Fatal(err)
	}
	dep.memLimit = pageSize // below the module's minimum, as Deploy would never allow
	exit := invoke(t, dep, 5*time.Second, "")
	if exit.Outcome != sandbox.Crashed || !strings.Contains(exit.Detail, "initial memory is over the limit of 64 KiB") {
		t.Errorf("Invoke = %s (%s), want crashed: initial memory over the limit", exit.Outcome, exit.Detail)
	}
	if used, n := d.budget.reserved(); used != 0 || n != 0 {
		t.Errorf("the budget holds %d bytes in %d reservations, want none", used, n)
	}
}

// TestReadModule checks the reader on sections it must refuse.
func TestReadModule(t *testing.T) {
	for _, c := range []struct {
		name string
		bin  []byte
		want string
	}{
		{"truncated section", []byte("\x00asm\x01\x00\x00\x00\x05\x05\x01"), "unexpected end"},
		{"two memory sections", wasmModule(section(sectionMemory, vec(lim(1, -1))), section(sectionMemory, vec(lim(1, -1)))), "appears twice"},
		{"shared table", wasmModule(section(sectionTable, vec([]byte{0x70, 3, 1, 1}))), "shared table"},
		{"size mismatch", wasmModule(section(sectionMemory, vec(lim(1, -1)), []byte{0})), "size mismatch"},
		{"huge integer", wasmModule(section(sectionMemory, []byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0x7f})), "too large"},
		{"vector longer than its section", wasmModule(section(sectionData, uleb(1<<32-1))), "section data: a vector of 4294967295 elements in 0 bytes"},
		{"name longer than its section", wasmModule(section(sectionExport, vec(cat(uleb(1<<31), []byte("x"))))), "unexpected end"},
		{"data bytes past the section", wasmModule(section(sectionData, vec(cat([]byte{1}, uleb(1<<30), []byte("abc"))))), "unexpected end"},
		{"locals over the function limit", wasmModule(section(sectionCode, vec(cat(uleb(6), vec(cat(uleb(50001), []byte{i32})), []byte{0x0b})))),
			"more than 50000 locals"},
		{"locals over the module limit", wasmModule(section(sectionCode, vec(slices.Repeat([][]byte{cat(uleb(6), vec(cat(uleb(50000), []byte{i32})), []byte{0x0b})}, 400)...))),
			"more than 16777216 locals in all"},
		{"function names past the subsection", wasmModule(section(sectionCustom, name("name"), []byte{1, 2}, uleb(1<<20), []byte{0})), "name subsection 1"},
		{"unknown section", wasmModule(section(14, []byte{0})), "unknown section"},
		{"element prefix", wasmModule(section(sectionElement, vec(uleb(8)))), "element segment prefix 8"},
		{"constant expression", wasmModule(section(sectionGlobal, vec([]byte{i32, 0, 0x20, 0, 0x0b}))), "opcode 0x20 in a constant expression"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := readModule(c.bin); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("readModule = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// TestEntryCheck checks that Deploy puts an empty loop at the start of
// every function, after its locals, so that a guest recursing without
// loops is stopped at its deadline: without it, the recursion tree below
// (2^30 calls) ran for seconds past a deadline of 100 ms.
func TestEntryCheck(t *testing.T) {
	localsThenNop := cat(vec(cat(uleb(2), []byte{i32})), []byte{0x01, 0x0b}) // (local i32 i32) nop
	in := wasmModule(section(sectionCode, vec(cat(uleb(uint64(len(localsThenNop))), localsThenNop), body())))
	info, err := readModule(in)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := rewriteModule(in, info)
	if err != nil {
		t.Fatal(err)
	}
	guarded := cat(vec(cat(uleb(2), []byte{i32})), entryCheck, []byte{0x01, 0x0b})
	want := wasmModule(section(sectionCode, vec(cat(uleb(uint64(len(guarded))), guarded), body(entryCheck))))
	if !bytes.Equal(out, want) {
		t.Errorf("rewriteModule = %x, want %x", out, want)
	}

	// func 0 (_start): call 1 (30); func 1 (d): if d { call 1 (d-1); call 1 (d-1) }
	dMinus1 := cat([]byte{0x20, 0}, i32c(1), []byte{0x6b}, call(1))
	tree := wasmModule(typeSection(), section(3, vec([]byte{typeVoid}, []byte{typeExit})), section(7, vec(exportOf("_start", 0, 0))),
		section(10, vec(body(i32c(30), call(1)), body([]byte{0x20, 0, 0x04, 0x40}, dMinus1, dMinus1, []byte{0x0b}))))
	d := newDriver(t, Config{})
	dep, err := deployBinary(t, d, tree, sandbox.Spec{Mode: sandbox.ModeCommand})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	exit := invoke(t, dep, 100*time.Millisecond, "")
	if took := time.Since(start); exit.Outcome != sandbox.Timeout || took > 2*time.Second {
		t.Errorf("recursion tree with a deadline of 100 ms = %s (%s) after %v, want timeout", exit.Outcome, exit.Detail, took)
	}
}
