package wasm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// Flags of a FuzzDeployInvoke input.
const (
	fuzzGen     = 1 << iota // module is a recipe for gen, not a binary
	fuzzCommand             // deploy in command mode, else server
	fuzzTwice               // invoke twice (a pooled reactor reuses its instance)
)

// FuzzDeployInvoke deploys and invokes generated and mutated modules with
// small limits: no panic may escape, none may be recovered either (a
// recovered driver panic is a bug the fuzzer found), every Deploy gives a
// deployment or an error, every Invoke an Exit with a known outcome, and
// once the deployment is stopped the memory budget holds no reservation.
// The seed corpus is testdata/fuzz/FuzzDeployInvoke (see TestFuzzSeeds).
func FuzzDeployInvoke(f *testing.F) {
	d := New(Config{
		Memory:       1 << 20,
		MemoryBudget: 4 << 20,
		Timeout:      50 * time.Millisecond,
		Concurrency:  2,
		MaxOutput:    4 << 10,
		MaxLog:       1 << 10,
	})
	f.Cleanup(func() { _ = d.Close() })
	if err := d.open(); err != nil {
		f.Fatal(err)
	}
	outcomes := []sandbox.Outcome{sandbox.OK, sandbox.Timeout, sandbox.Crashed, sandbox.OOM}
	f.Fuzz(func(t *testing.T, module []byte, flags byte) {
		bin := module
		if flags&fuzzGen != 0 {
			bin = gen(module)
		}
		spec := sandbox.Spec{Service: "fuzz", Entry: "fuzz.wasm", Mode: sandbox.ModeServer}
		if flags&fuzzCommand != 0 {
			spec.Mode = sandbox.ModeCommand
		}
		dep, err := d.deploy(context.Background(), spec, bin)
		if err != nil {
			if dep != nil || !strings.HasPrefix(err.Error(), "deploy fuzz: ") || strings.Contains(err.Error(), "panic") {
				t.Fatalf("deploy = %v, %v; want no deployment and an error naming the service, not a panic", dep, err)
			}
			return
		}
		for range 1 + int(flags&fuzzTwice>>2) {
			exit, err := dep.Invoke(context.Background(), []byte(`{"noop":"fuzz"}`))
			if err != nil {
				t.Fatalf("Invoke = %v, want an Exit", err)
			}
			if !slices.Contains(outcomes, exit.Outcome) {
				t.Fatalf("Invoke = %s (%s), want one of %v", exit.Outcome, exit.Detail, outcomes)
			}
			if strings.Contains(exit.Detail, "driver panic") || strings.Contains(exit.Detail, "initial memory is over the limit") {
				t.Fatalf("Invoke = %s (%s): a driver panic, recovered", exit.Outcome, exit.Detail)
			}
		}
		if err := dep.Stop(context.Background()); err != nil {
			t.Fatalf("Stop = %v", err)
		}
		if used, n := d.budget.reserved(); used != 0 || n != 0 {
			t.Fatalf("after Stop, the budget holds %d bytes in %d reservations, want none", used, n)
		}
	})
}

// fuzzSeed is one input of the seed corpus.
type fuzzSeed struct {
	name   string
	module []byte
	flags  byte
}

// fuzzSeeds are the seed corpus: a module for each kind of section, and
// recipes for gen.
func fuzzSeeds() []fuzzSeed {
	start := func(code ...[]byte) []byte { // a command whose _start runs code
		return cat(section(3, vec([]byte{typeVoid})), section(7, vec(exportOf("_start", 0, 0))), section(10, vec(body(code...))))
	}
	mem := section(sectionMemory, vec(lim(1, -1)))
	wasi := func(imports ...[]byte) []byte { return section(sectionImport, vec(imports...)) }
	// hello writes "hello" to stdout: iovec {16, 5} at 0, nwritten at 8.
	hello := [][]byte{i32c(0), i32c(16), opStore, i32c(4), i32c(5), opStore, i32c(1), i32c(0), i32c(1), i32c(8), call(0), opDrop}
	helloData := section(11, vec(cat([]byte{0}, i32c(16), []byte{0x0b}, name("hello"))))
	reactor := cat(
		section(3, vec([]byte{typeAlloc}, []byte{typeInvoke}, []byte{typeVoid})),
		mem,
		section(7, vec(exportOf(exportAlloc, 0, 0), exportOf(exportInvoke, 0, 1), exportOf(exportMemory, 2, 0), exportOf("_initialize", 0, 2))),
		section(10, vec(
			body(i32c(1024)),
			body([]byte{0x20, 0, 0xad}, i64c(32), []byte{0x86, 0x20, 1, 0xad, 0x84}),
			body(),
		)),
	)
	seeds := []fuzzSeed{
		{"type-function-export-code", wasmModule(typeSection(), start()), fuzzCommand},
		{"import-func", wasmModule(typeSection(), wasi(importFunc("wasi_snapshot_preview1", "fd_write", typeWrite)),
			section(3, vec([]byte{typeVoid})), mem, section(7, vec(exportOf("_start", 0, 1))), section(10, vec(body(hello...))), helloData), fuzzCommand},
		{"import-func-unknown", wasmModule(typeSection(), wasi(importFunc("wasi_snapshot_preview1", "sock_open", typeVoid)), start()), 0},
		{"import-memory", wasmModule(typeSection(), wasi(cat(name("wasi_snapshot_preview1"), name("memory"), []byte{externMemory}, lim(1, -1))), start()), 0},
		{"import-table", wasmModule(typeSection(), wasi(cat(name("env"), name("table"), []byte{externTable, 0x70}, lim(1, -1))), start()), 0},
		{"import-global", wasmModule(typeSection(), wasi(cat(name("env"), name("g"), []byte{externGlobal, i32, 0})), start()), 0},
		{"table-unbounded-grow", wasmModule(typeSection(), section(3, vec([]byte{typeVoid})),
			section(sectionTable, vec(cat([]byte{0x70}, lim(2, -1)))), section(7, vec(exportOf("_start", 0, 0))),
			section(10, vec(body(opRefNull, i32c(1<<20), opTableGrow0, opDrop)))), fuzzCommand},
		{"table-too-big", wasmModule(typeSection(), section(3, vec([]byte{typeVoid})),
			section(sectionTable, vec(cat([]byte{0x70}, lim(1<<20+1, -1)))), section(7, vec(exportOf("_start", 0, 0))), section(10, vec(body()))), 0},
		{"memory-unexported-2048-pages", wasmModule(typeSection(), section(3, vec([]byte{typeVoid})),
			section(sectionMemory, vec(lim(2048, -1))), section(7, vec(exportOf("_start", 0, 0))), section(10, vec(body()))), fuzzCommand},
		{"memory-max-above-limit", wasmModule(typeSection(), section(3, vec([]byte{typeVoid})),
			section(sectionMemory, vec(lim(1, 65536))), section(7, vec(exportOf("_start", 0, 0), exportOf(exportMemory, 2, 0))),
			section(10, vec(body([]byte{0x03, 0x40}, i32c(1), opMemGrow, i32c(-1), []byte{0x47, 0x0d, 0, 0x0b}, opUnreach)))), fuzzCommand},
		{"global", wasmModule(typeSection(), section(3, vec([]byte{typeVoid})),
			section(6, vec(cat([]byte{i32, 1}, i32c(7), []byte{0x0b}))), section(7, vec(exportOf("_start", 0, 0), exportOf("g", 3, 0))),
			section(10, vec(body([]byte{0x23, 0}, i32c(1), []byte{0x6a}, []byte{0x24, 0})))), fuzzCommand},
		{"start-spins", wasmModule(typeSection(), section(3, vec([]byte{typeVoid}, []byte{typeVoid})),
			section(7, vec(exportOf("_start", 0, 0))), section(8, uleb(1)), section(10, vec(body(), body(opSpin)))), fuzzCommand},
		{"element-call-indirect", wasmModule(typeSection(), section(3, vec([]byte{typeVoid}, []byte{typeVoid})),
			section(sectionTable, vec(cat([]byte{0x70}, lim(2, 2)))), section(7, vec(exportOf("_start", 0, 0))),
			section(9, vec(cat([]byte{0}, i32c(0), []byte{0x0b}, vec(uleb(1), uleb(1))))),
			section(10, vec(body(i32c(1), []byte{0x11, typeVoid, 0}, i32c(2), []byte{0x11, typeVoid, 0}), body()))), fuzzCommand},
		{"data", wasmModule(typeSection(), wasi(importFunc("wasi_snapshot_preview1", "fd_write", typeWrite)),
			section(3, vec([]byte{typeVoid})), mem, section(7, vec(exportOf("_start", 0, 1))), section(10, vec(body(hello...))),
			section(11, vec(cat([]byte{0}, i32c(65534), []byte{0x0b}, name("hello"))))), fuzzCommand},
		{"data-count-memory-init", wasmModule(typeSection(), section(3, vec([]byte{typeVoid})), mem,
			section(7, vec(exportOf("_start", 0, 0))), section(12, uleb(1)),
			section(10, vec(body(i32c(65530), i32c(0), i32c(7), opMemInit0, opDataDrop0))),
			section(11, vec(cat([]byte{1}, name("passive"))))), fuzzCommand},
		{"custom", wasmModule(section(sectionCustom, name("andromeda"), []byte{0xff, 0xff}), typeSection(), start(),
			section(sectionCustom, name("producers"), []byte("fuzz"))), fuzzCommand},
		{"reactor", wasmModule(typeSection(), reactor), fuzzTwice},
		{"reactor-command-mode", wasmModule(typeSection(), reactor), fuzzCommand | fuzzTwice},
		{"not-wasm", []byte("\x00asm\x01\x00\x00\x00\x05\xff\xff\xff\xff\x0f"), 0},
		// Found by this fuzz test: wazero allocated four billion data
		// segments for it and the process aborted.
		{"data-vector-too-long", []byte("\x00asm\x01\x00\x00\x00\v0\u07ba\xe3\x97\a"), fuzzCommand},
		{"locals-too-many", wasmModule(typeSection(), section(3, vec([]byte{typeVoid})), section(7, vec(exportOf("_start", 0, 0))),
			section(10, vec(cat(uleb(8), vec(cat(uleb(1<<32-1), []byte{i32})), []byte{0x0b})))), fuzzCommand},
		{"type-params-too-many", wasmModule(section(1, vec(cat([]byte{0x60}, uleb(1<<32-1), []byte{i32, 0}))), start()), fuzzCommand},
	}
	// Recipes for gen: flags, bad import, exports, then the picks of the
	// memory's and the table's limits, the element and data offsets, the
	// invoke and alloc results, and then the functions' code.
	for i, r := range [][]byte{
		{}, // an empty command
		{0x11, 0xff, 0x0a, 0, 0, 0, 0, 0, 0, // a reactor with fd_write, a memory and _initialize
			0, 2, 1, 1, 8, 1, 0, 0, 0, 0},
		{0xf6, 0xff, 0xc1, 1, 0, 0, 1, 0, 0, 0, 0, // a command with a table, a global, a start function and a data count
			6, 9, 1, 11, 0, 12, 13, 0, 0, 16, 0, 0, 7, 0, 0, 0, 0, 1, 10},
		{0x12, 0xff, 0x01, 3, 0, 0, 0, 0, 0, // a command that grows its memory past the limit, then exits 1
			4, 1, 2, 1, 2, 1, 2, 7, 1},
		{0x58, 0x05, 0x21, 1, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 12}, // imports a global: refused
		{0x21, 0xff, 0x01, 0, 0, 0, 0, 0, 0, 1, 5},                    // a command with an unbounded table that spins
	} {
		seeds = append(seeds, fuzzSeed{fmt.Sprintf("gen-%d", i), r, fuzzGen | byte(i%2)*fuzzTwice})
		seeds = append(seeds, fuzzSeed{fmt.Sprintf("gen-%d-command", i), r, fuzzGen | fuzzCommand})
	}
	return seeds
}

// TestFuzzSeeds checks that testdata/fuzz/FuzzDeployInvoke holds the seed
// corpus fuzzSeeds builds; -update rewrites it.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDeployInvoke")
	if *update {
		old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
		for _, p := range old {
			_ = os.Remove(p)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range fuzzSeeds() {
		want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\nbyte(%q)\n", s.module, s.flags)
		path := filepath.Join(dir, "seed-"+s.name)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not the seed fuzzSeeds builds (%v); run go test -run TestFuzzSeeds -update", path, err)
		}
	}
}
