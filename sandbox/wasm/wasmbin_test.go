package wasm

import (
	"encoding/binary"
)

// This file builds WebAssembly binaries for the tests: a few encoding
// helpers, and gen, which turns any byte string into a module that is
// usually valid, for the fuzz test.

func uleb(v uint64) []byte { return appendULEB(nil, v) }

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// wasmModule is the header followed by sections.
func wasmModule(sections ...[]byte) []byte {
	return cat(append([][]byte{[]byte("\x00asm\x01\x00\x00\x00")}, sections...)...)
}

func section(id byte, payload ...[]byte) []byte {
	p := cat(payload...)
	return cat([]byte{id}, uleb(uint64(len(p))), p)
}

// vec is a vector: its length, then its items.
func vec(items ...[]byte) []byte {
	return cat(append([][]byte{uleb(uint64(len(items)))}, items...)...)
}

func name(s string) []byte { return cat(uleb(uint64(len(s))), []byte(s)) }

// lim encodes limits; max < 0 means none.
func lim(min uint64, max int64) []byte {
	if max < 0 {
		return cat([]byte{0}, uleb(min))
	}
	return cat([]byte{1}, uleb(min), uleb(uint64(max)))
}

// Value types and the function types every built module declares, in order.
const (
	i32 = 0x7f
	i64 = 0x7e
)

var builtTypes = [][]byte{
	{0x60, 0, 0},                          // 0: () -> ()
	{0x60, 1, i32, 1, i32},                // 1: (i32) -> i32
	{0x60, 2, i32, i32, 1, i64},           // 2: (i32, i32) -> i64
	{0x60, 1, i32, 0},                     // 3: (i32) -> ()
	{0x60, 4, i32, i32, i32, i32, 1, i32}, // 4: (i32, i32, i32, i32) -> i32
	{0x60, 2, i32, i32, 1, i32},           // 5: (i32, i32) -> i32
}

const (
	typeVoid   = 0
	typeAlloc  = 1
	typeInvoke = 2
	typeExit   = 3
	typeWrite  = 4
	typeRandom = 5
)

func typeSection() []byte { return section(1, vec(builtTypes...)) }

func importFunc(mod, fn string, typ uint64) []byte {
	return cat(name(mod), name(fn), []byte{externFunc}, uleb(typ))
}

func exportOf(n string, kind byte, idx uint64) []byte {
	return cat(name(n), []byte{kind}, uleb(idx))
}

// body is a function body with no locals.
func body(code ...[]byte) []byte {
	b := cat(append([][]byte{{0}}, append(code, []byte{0x0b})...)...)
	return cat(uleb(uint64(len(b))), b)
}

// Instructions.
func i32c(v int32) []byte  { return cat([]byte{0x41}, sleb(int64(v))) }
func i64c(v int64) []byte  { return cat([]byte{0x42}, sleb(v)) }
func call(f uint64) []byte { return cat([]byte{0x10}, uleb(f)) }

var (
	opDrop       = []byte{0x1a}
	opUnreach    = []byte{0x00}
	opMemGrow    = []byte{0x40, 0}
	opMemSize    = []byte{0x3f, 0}
	opStore      = []byte{0x36, 2, 0}
	opLoad       = []byte{0x28, 2, 0}
	opMemFill    = []byte{0xfc, 11, 0}
	opMemCopy    = []byte{0xfc, 10, 0, 0}
	opMemInit0   = []byte{0xfc, 8, 0, 0}
	opDataDrop0  = []byte{0xfc, 9, 0}
	opTableGrow0 = []byte{0xfc, 15, 0}
	opTableSize0 = []byte{0xfc, 16, 0}
	opRefNull    = []byte{0xd0, 0x70}
	opSpin       = []byte{0x03, 0x40, 0x0c, 0, 0x0b} // loop br 0 end
)

// recipe reads choices from the fuzzer's bytes; past the end it reads zeros.
type recipe struct {
	b []byte
	i int
}

func (r *recipe) byte() byte {
	if r.i >= len(r.b) {
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *recipe) u32() uint32 {
	var b [4]byte
	for i := range b {
		b[i] = r.byte()
	}
	return binary.LittleEndian.Uint32(b[:])
}

func (r *recipe) bit(n uint) bool { return r.byte()&(1<<n) != 0 }

// pick returns one of vals, or a free value from the recipe for the last
// choice.
func (r *recipe) pick(vals ...int64) int64 { return r.pickBelow(1<<32-1, vals...) }

// pickBelow is pick with a free value below bound.
func (r *recipe) pickBelow(bound uint32, vals ...int64) int64 {
	c := int(r.byte())
	if c%(len(vals)+1) == len(vals) {
		return int64(r.u32() % bound)
	}
	return vals[c%(len(vals)+1)]
}

// gen builds a module from the recipe in b: imports (WASI functions, and
// sometimes what a guest may not import), a memory and a table with
// assorted limits, a global, exports of either shape, a start function,
// element and data segments, a data count and a custom section, and five
// functions whose bodies grow and fill memory and tables, loop, trap, exit,
// write, fill the stack or recurse. The recipe's first bytes choose the
// module's structure and the rest its code, so that most recipes give a
// valid module.
func gen(b []byte) []byte {
	r := &recipe{b: b}
	flags := r.byte()
	bad := r.byte() // an import the driver must refuse, when below 64
	ex := r.byte()  // exports, start and custom sections
	if ex&3 == 0 {
		ex |= 1 // mostly a command or a reactor
	}
	hasMem := flags&0x10 != 0
	hasTable := flags&0x20 != 0
	hasGlobal := flags&0x40 != 0
	dataCount := flags&0x80 != 0 && hasMem
	var memMin uint64
	var memSec, tableSec []byte
	if hasMem {
		memMin = uint64(r.pickBelow(70000, 1, 1, 0, 2, 4, 16, 17, 2048, 65536))
		max := r.pickBelow(70000, -1, -1, int64(memMin), int64(memMin)+1, int64(memMin)+16, 65536, int64(memMin)-1)
		memSec = section(sectionMemory, vec(lim(memMin, max)))
	}
	if hasTable {
		min := uint64(r.pickBelow(1<<22, 2, 2, 0, 1, 4, 1<<20, 1<<20+1))
		max := r.pickBelow(1<<22, -1, int64(min), int64(min)+8, 1<<21)
		tableSec = section(sectionTable, vec(cat([]byte{0x70}, lim(min, max))))
	}
	elemOffset := int32(r.pickBelow(1<<21, 0, 0, 1, 1<<20))
	dataOffset := int32(r.pickBelow(1<<21, 16, 1024, 65530, 1<<20))
	var invokeTail []byte
	switch r.byte() % 4 {
	case 0:
		invokeTail = cat([]byte{0x20, 0, 0xad}, i64c(32), []byte{0x86, 0x20, 1, 0xad, 0x84}) // ptr<<32 | len: echo
	case 1:
		invokeTail = i64c(0)
	case 2:
		invokeTail = i64c(int64(r.u32())<<32 | int64(r.u32()))
	case 3:
		invokeTail = i64c(1024<<32 | 1<<30)
	}
	allocTail := i32c(int32(r.pick(1024, 1024, 0, 65535, -16)))

	var imports [][]byte
	nfunc, nglobal := uint64(0), uint64(0)
	fdWrite, procExit, randomGet := int64(-1), int64(-1), int64(-1)
	if flags&1 != 0 {
		imports = append(imports, importFunc("wasi_snapshot_preview1", "fd_write", typeWrite))
		fdWrite = int64(nfunc)
		nfunc++
	}
	if flags&2 != 0 {
		imports = append(imports, importFunc("wasi_snapshot_preview1", "proc_exit", typeExit))
		procExit = int64(nfunc)
		nfunc++
	}
	if flags&4 != 0 {
		imports = append(imports, importFunc("wasi_snapshot_preview1", "random_get", typeRandom))
		randomGet = int64(nfunc)
		nfunc++
	}
	if flags&8 != 0 && bad < 64 {
		switch bad % 6 {
		case 0:
			imports = append(imports, importFunc("env", "f", typeVoid))
			nfunc++
		case 1:
			imports = append(imports, importFunc("wasi_snapshot_preview1", "no_such_function", typeVoid))
			nfunc++
		case 2:
			imports = append(imports, importFunc("wasi_snapshot_preview1", "proc_exit", typeVoid))
			nfunc++
		case 3:
			imports = append(imports, cat(name("wasi_snapshot_preview1"), name("memory"), []byte{externMemory}, lim(uint64(bad%3)*1024, -1)))
		case 4:
			imports = append(imports, cat(name("wasi_snapshot_preview1"), name("table"), []byte{externTable, 0x70}, lim(uint64(bad%2)<<20, -1)))
		case 5:
			imports = append(imports, cat(name("env"), name("g"), []byte{externGlobal, i32, 0}))
			nglobal++
		}
	}
	fStart, fAlloc, fInvoke, fInit, fAux := nfunc, nfunc+1, nfunc+2, nfunc+3, nfunc+4

	bodyOf := func(tail ...[]byte) []byte {
		var code [][]byte
		for range r.byte() % 8 {
			switch r.byte() % 18 {
			case 0:
				code = append(code, i32c(int32(r.u32())), opDrop)
			case 1:
				if hasMem {
					code = append(code, i32c(int32(r.pick(0, 1, 15, 16, 17, 1000, 0x7fffffff, -1))), opMemGrow, opDrop)
				}
			case 2:
				if hasMem {
					code = append(code, i32c(int32(r.pick(0, 1020, 65532, 65536))), i32c(int32(r.u32())), opStore)
				}
			case 3:
				if hasMem {
					code = append(code, i32c(int32(r.pick(0, 1024))), i32c(0x55), i32c(int32(r.pick(0, 1<<16, 1<<20, -1))), opMemFill)
				}
			case 4:
				if hasMem {
					code = append(code, i32c(int32(r.pick(0, 4096))), i32c(0), i32c(int32(r.pick(16, 1<<16, 1<<20))), opMemCopy)
				}
			case 5:
				code = append(code, opSpin)
			case 6:
				code = append(code, opUnreach)
			case 7:
				if procExit >= 0 {
					code = append(code, i32c(int32(r.pick(0, 1, 2))), call(uint64(procExit)))
				}
			case 8:
				if hasMem && fdWrite >= 0 { // iovec {16, n} at 0; nwritten at 8
					code = append(code, i32c(0), i32c(16), opStore, i32c(4), i32c(int32(r.pick(0, 17, 1<<16, 1<<20))), opStore,
						i32c(int32(r.pick(1, 2, 7))), i32c(0), i32c(1), i32c(8), call(uint64(fdWrite)), opDrop)
				}
			case 9:
				if hasTable {
					code = append(code, opRefNull, i32c(int32(r.pick(0, 1, 1<<20, -1))), opTableGrow0, opDrop)
				}
			case 10:
				if hasTable {
					code = append(code, opTableSize0, opDrop)
				}
			case 11:
				if hasTable {
					code = append(code, i32c(int32(r.pick(0, 1, 2))), []byte{0x11, typeVoid, 0})
				}
			case 12:
				if hasGlobal {
					g := uleb(nglobal)
					code = append(code, []byte{0x23}, g, i32c(1), []byte{0x6a}, []byte{0x24}, g)
				}
			case 13:
				if dataCount {
					code = append(code, i32c(int32(r.pick(0, 65535))), i32c(0), i32c(int32(r.pick(1, 5, 6))), opMemInit0)
				}
			case 14:
				if dataCount {
					code = append(code, opDataDrop0)
				}
			case 15:
				code = append(code, call(fAux))
			case 16:
				if hasMem && randomGet >= 0 {
					code = append(code, i32c(int32(r.pick(0, 65535))), i32c(int32(r.pick(8, 1<<16))), call(uint64(randomGet)), opDrop)
				}
			case 17:
				if hasMem {
					code = append(code, opMemSize, opDrop, i32c(int32(r.pick(0, 65532, 1<<20))), opLoad, opDrop)
				}
			}
		}
		return body(append(code, tail...)...)
	}
	codes := [][]byte{bodyOf(), bodyOf(allocTail), bodyOf(invokeTail), bodyOf(), bodyOf()}
	funcs := [][]byte{{typeVoid}, {typeAlloc}, {typeInvoke}, {typeVoid}, {typeVoid}}

	var exports [][]byte
	if ex&1 != 0 {
		exports = append(exports, exportOf("_start", 0, fStart))
	}
	if ex&2 != 0 {
		exports = append(exports, exportOf(exportAlloc, 0, fAlloc), exportOf(exportInvoke, 0, fInvoke))
	}
	if ex&4 == 0 && hasMem {
		exports = append(exports, exportOf(exportMemory, 2, 0))
	}
	if ex&8 != 0 {
		exports = append(exports, exportOf("_initialize", 0, fInit))
	}
	if ex&16 != 0 && hasTable {
		exports = append(exports, exportOf("table", 1, 0))
	}
	if ex&32 != 0 && hasGlobal {
		exports = append(exports, exportOf("counter", 3, nglobal))
	}

	secs := [][]byte{typeSection()}
	if len(imports) > 0 {
		secs = append(secs, section(sectionImport, vec(imports...)))
	}
	secs = append(secs, section(3, vec(funcs...)))
	if hasTable {
		secs = append(secs, tableSec)
	}
	if hasMem {
		secs = append(secs, memSec)
	}
	if hasGlobal {
		secs = append(secs, section(6, vec(cat([]byte{i32, 1}, i32c(0), []byte{0x0b}))))
	}
	if len(exports) > 0 {
		secs = append(secs, section(7, vec(exports...)))
	}
	if ex&64 != 0 {
		secs = append(secs, section(8, uleb(fAux)))
	}
	if hasTable {
		secs = append(secs, section(9, vec(cat([]byte{0}, i32c(elemOffset), []byte{0x0b}, vec(uleb(fAux), uleb(fStart))))))
	}
	if dataCount {
		secs = append(secs, section(12, uleb(2)))
	}
	secs = append(secs, section(10, vec(codes...)))
	if hasMem {
		secs = append(secs, section(11, vec(
			cat([]byte{0}, i32c(dataOffset), []byte{0x0b}, name("hello")),
			cat([]byte{1}, name("passive")),
		)))
	}
	if ex&128 != 0 {
		secs = append(secs, section(sectionCustom, name("fuzz"), []byte("custom section")))
	}
	return wasmModule(secs...)
}
