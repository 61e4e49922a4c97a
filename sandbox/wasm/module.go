package wasm

import (
	"errors"
	"fmt"
)

// This file reads a module binary before wazero does, for two reasons, and
// rewrites two of its sections (rewriteModule: tables get a maximum, every
// function a deadline check).
//
// The host memory an instance takes: its imports, tables and memories,
// whether exported or not. wazero's CompiledModule shows only exported
// memories and imported functions and memories.
//
// The host memory decoding takes: wazero's decoder (v1.12) allocates every
// vector at the length the binary declares before reading its elements, so
// a module of 15 bytes declaring four billion data segments makes it
// allocate hundreds of gigabytes, and the Go runtime aborts the process (an
// out-of-memory abort is not a panic and cannot be recovered). The same
// holds for names, data bytes, element vectors, function types and locals.
// So readModule walks every section, and every vector in it, within the
// bytes the section has: a vector whose elements are not all there, or a
// function declaring more locals than maxFunctionLocals (maxModuleLocals in
// all), is refused before wazero sees it. The walk reads each construct as
// wazero reads it and accepts everything wazero's decoder accepts but those
// locals; what else it refuses, wazero would refuse or could not decode
// without that cost.

// Section ids of the WebAssembly binary format.
const (
	sectionCustom    = 0
	sectionType      = 1
	sectionImport    = 2
	sectionFunction  = 3
	sectionTable     = 4
	sectionMemory    = 5
	sectionGlobal    = 6
	sectionExport    = 7
	sectionStart     = 8
	sectionElement   = 9
	sectionCode      = 10
	sectionData      = 11
	sectionDataCount = 12
	sectionTag       = 13
)

// Kinds of import (externtype).
const (
	externFunc   = 0
	externTable  = 1
	externMemory = 2
	externGlobal = 3
	externTag    = 4
)

// tableElementSize is the host memory one table element takes in wazero (a
// uintptr reference).
const tableElementSize = 8

// maxTableElements bounds the elements of all the tables of one instance
// together: 1 Mi elements, 8 MiB of host memory. A Go program of 50 000
// functions has a table of about that many elements.
const maxTableElements = 1 << 20

// maxFunctionLocals bounds the locals one function declares (V8's limit,
// so a module that runs in browsers is not refused here), and
// maxModuleLocals those of all the functions of a module: wazero allocates
// a byte for each at decoding.
const (
	maxFunctionLocals = 50000
	maxModuleLocals   = 1 << 24
)

// limits is a table's or a memory's limits, in elements or pages.
type limits struct {
	min    uint64
	max    uint64
	hasMax bool
}

// moduleImport is one import of a module.
type moduleImport struct {
	module, name string
	kind         byte
}

// table is one table a module defines. maxAt is the offset in the binary of
// its limits' flag byte and end the offset just past its limits, so that
// boundTables can rewrite them.
type table struct {
	limits
	maxAt, end int
}

// span is where a section is in the binary: the offset of its id, of its
// payload and of its end. Zero when the module has no such section.
type span struct{ header, start, end int }

// funcBody is where a function body is in the binary: the offset of its size,
// of its locals, of its first instruction and of its end.
type funcBody struct{ sizeAt, locals, code, end int }

// moduleInfo is what the driver checks in a module binary before compiling
// it, and where rewriteModule changes it.
type moduleInfo struct {
	imports  []moduleImport
	tables   []table
	memories []limits // defined memories; imported ones are in imports
	bodies   []funcBody

	tableSection, codeSection span
}

var errTruncated = errors.New("unexpected end of section")

// reader reads the WebAssembly binary encoding.
type reader struct {
	b   []byte
	off int
}

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

// uleb reads an unsigned LEB128 integer of at most bits bits.
func (r *reader) uleb(bits uint) (uint64, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if shift >= bits || (bits-shift < 7 && uint64(c&0x7f)>>(bits-shift) != 0) {
			return 0, errors.New("integer too large")
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
}

// sleb skips a signed LEB128 integer of at most bits bits.
func (r *reader) sleb(bits uint) error {
	for n := uint(0); ; n += 7 {
		c, err := r.byte()
		if err != nil {
			return err
		}
		if n >= bits {
			return errors.New("integer too large")
		}
		if c&0x80 == 0 {
			return nil
		}
	}
}

func (r *reader) skip(n uint64) error {
	if n > uint64(len(r.b)-r.off) {
		return errTruncated
	}
	r.off += int(n)
	return nil
}

func (r *reader) name() (string, error) {
	n, err := r.uleb(32)
	if err != nil {
		return "", err
	}
	start := r.off
	if err := r.skip(n); err != nil {
		return "", err
	}
	return string(r.b[start:r.off]), nil
}

// limits reads a limits pair; maxAt is the offset of its flag byte.
func (r *reader) limits() (l limits, maxAt int, err error) {
	maxAt = r.off
	flag, err := r.byte()
	if err != nil {
		return l, maxAt, err
	}
	if flag > 0x03 { // 0x02 and 0x03 are shared memories (threads)
		return l, maxAt, fmt.Errorf("limits flag %#x", flag)
	}
	if l.min, err = r.uleb(32); err != nil {
		return l, maxAt, err
	}
	if l.hasMax = flag&1 != 0; l.hasMax {
		l.max, err = r.uleb(32)
	}
	return l, maxAt, err
}

// refType reads a reference type: one byte, or a prefix and a heap type.
func (r *reader) refType() error {
	c, err := r.byte()
	if err != nil {
		return err
	}
	if c == 0x63 || c == 0x64 { // (ref null ht), (ref ht)
		return r.sleb(33)
	}
	return nil
}

// constExpr skips a constant expression, up to and including its end.
func (r *reader) constExpr() error {
	for {
		op, err := r.byte()
		if err != nil {
			return err
		}
		switch op {
		case 0x0b: // end
			return nil
		case 0x41: // i32.const
			err = r.sleb(32)
		case 0x42: // i64.const
			err = r.sleb(64)
		case 0x43: // f32.const
			err = r.skip(4)
		case 0x44: // f64.const
			err = r.skip(8)
		case 0x23, 0xd2: // global.get, ref.func
			_, err = r.uleb(32)
		case 0xd0: // ref.null
			err = r.sleb(33)
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended-const arithmetic
		case 0xfd: // v128.const
			var sub byte
			if sub, err = r.byte(); err == nil && sub != 0x0c {
				err = fmt.Errorf("opcode 0xfd %#x in a constant expression", sub)
			}
			if err == nil {
				err = r.skip(16)
			}
		default:
			return fmt.Errorf("opcode %#x in a constant expression", op)
		}
		if err != nil {
			return err
		}
	}
}

// readModule walks the module binary bin, checking that every vector's
// elements are within its section, and returns its imports, tables and
// memories.
func readModule(bin []byte) (moduleInfo, error) {
	var info moduleInfo
	if len(bin) < 8 {
		return info, errTruncated
	}
	r := &reader{b: bin, off: 8}
	var seen uint32
	var locals uint64
	for r.off < len(bin) {
		at := r.off
		id, err := r.byte()
		if err != nil {
			return info, err
		}
		size, err := r.uleb(32)
		if err != nil {
			return info, fmt.Errorf("section %d: %w", id, err)
		}
		start := r.off
		if err := r.skip(size); err != nil {
			return info, fmt.Errorf("section %s: %w", sectionName(id), err)
		}
		s := &reader{b: bin[:r.off], off: start}
		if id != sectionCustom && id < 32 {
			if seen&(1<<id) != 0 {
				return info, fmt.Errorf("section %s: appears twice", sectionName(id))
			}
			seen |= 1 << id
		}
		switch id {
		case sectionCustom:
			err = s.custom()
		case sectionType:
			err = s.vector(s.funcType)
		case sectionImport:
			err = s.imports(&info)
		case sectionFunction, sectionStart, sectionDataCount:
			err = s.indices(id != sectionFunction)
		case sectionTable:
			info.tableSection = span{at, start, r.off}
			err = s.tables(&info)
		case sectionMemory:
			err = s.memories(&info)
		case sectionGlobal:
			err = s.vector(func() error {
				if err := s.refType(); err != nil {
					return err
				}
				if _, err := s.byte(); err != nil { // mutability
					return err
				}
				return s.constExpr()
			})
		case sectionExport:
			err = s.vector(func() error {
				if _, err := s.name(); err != nil {
					return err
				}
				if _, err := s.byte(); err != nil {
					return err
				}
				_, err := s.uleb(32)
				return err
			})
		case sectionElement:
			err = s.vector(s.element)
		case sectionCode:
			info.codeSection = span{at, start, r.off}
			err = s.vector(func() error { return s.code(&info, &locals) })
		case sectionData:
			err = s.vector(s.data)
		case sectionTag:
			err = s.vector(func() error {
				if _, err := s.byte(); err != nil {
					return err
				}
				_, err := s.uleb(32)
				return err
			})
		default:
			err = errors.New("unknown section")
		}
		if err == nil && s.off != r.off {
			err = errors.New("section size mismatch")
		}
		if err != nil {
			return info, fmt.Errorf("section %s: %w", sectionName(id), err)
		}
	}
	return info, nil
}

// vector reads a vector, calling elem for each element. Each element takes
// at least a byte, so a length beyond the section's end fails at its end.
func (r *reader) vector(elem func() error) error {
	n, err := r.uleb(32)
	if err != nil {
		return err
	}
	if n > uint64(len(r.b)-r.off) {
		return fmt.Errorf("a vector of %d elements in %d bytes", n, len(r.b)-r.off)
	}
	for range n {
		if err := elem(); err != nil {
			return err
		}
	}
	return nil
}

// indices reads a vector of indices, or a single one.
func (r *reader) indices(single bool) error {
	if single {
		_, err := r.uleb(32)
		return err
	}
	return r.vector(func() error {
		_, err := r.uleb(32)
		return err
	})
}

// custom reads a custom section: its name, and the name section's
// subsections, which wazero decodes.
func (r *reader) custom() error {
	n, err := r.name()
	if err != nil || n != "name" {
		r.off = len(r.b)
		return err
	}
	for r.off < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return err
		}
		size, err := r.uleb(32)
		if err != nil {
			return err
		}
		start := r.off
		if err := r.skip(size); err != nil {
			return err
		}
		sub := &reader{b: r.b[:r.off], off: start}
		switch id {
		case 0: // module name
			_, err = sub.name()
		case 1: // function names
			err = sub.vector(sub.nameAssoc)
		case 2: // local names
			err = sub.vector(func() error {
				if _, err := sub.uleb(32); err != nil {
					return err
				}
				return sub.vector(sub.nameAssoc)
			})
		default:
			continue
		}
		if err == nil && sub.off != r.off {
			err = errors.New("name subsection size mismatch")
		}
		if err != nil {
			return fmt.Errorf("name subsection %d: %w", id, err)
		}
	}
	return nil
}

func (r *reader) nameAssoc() error {
	if _, err := r.uleb(32); err != nil {
		return err
	}
	_, err := r.name()
	return err
}

// funcType reads a function type, or a recursive group of them (not
// nested: wazero reads none, and the walk must not recurse on input).
func (r *reader) funcType() error {
	c, err := r.byte()
	if err != nil {
		return err
	}
	if c == 0x4e { // rec group
		return r.vector(func() error {
			if _, err := r.byte(); err != nil {
				return err
			}
			return r.params()
		})
	}
	return r.params()
}

// params reads a function type's parameter and result types.
func (r *reader) params() error {
	for range 2 {
		if err := r.vector(r.refType); err != nil {
			return err
		}
	}
	return nil
}

// element reads an element segment, of any of its eight encodings.
func (r *reader) element() error {
	prefix, err := r.uleb(32)
	if err != nil {
		return err
	}
	if prefix > 7 {
		return fmt.Errorf("element segment prefix %d", prefix)
	}
	if prefix&3 == 2 { // a table index
		if _, err := r.uleb(32); err != nil {
			return err
		}
	}
	if prefix&1 == 0 { // active: an offset
		if err := r.constExpr(); err != nil {
			return err
		}
	}
	if prefix&3 != 0 { // an element kind (byte) or reference type
		if prefix&4 == 0 {
			_, err = r.byte()
		} else {
			err = r.refType()
		}
		if err != nil {
			return err
		}
	}
	if prefix&4 == 0 {
		return r.indices(false)
	}
	return r.vector(r.constExpr)
}

// code reads a function body's locals and skips its instructions; locals
// counts the locals of the module's functions.
func (r *reader) code(info *moduleInfo, locals *uint64) error {
	sizeAt := r.off
	size, err := r.uleb(32)
	if err != nil {
		return err
	}
	start := r.off
	if err := r.skip(size); err != nil {
		return err
	}
	end := r.off
	b := &reader{b: r.b[:end], off: start}
	var n uint64
	err = b.vector(func() error {
		count, err := b.uleb(32)
		if err != nil {
			return err
		}
		if n += count; n > maxFunctionLocals {
			return fmt.Errorf("a function declares more than %d locals", maxFunctionLocals)
		}
		return b.refType()
	})
	if err != nil {
		return err
	}
	if *locals += n; *locals > maxModuleLocals {
		return fmt.Errorf("the functions declare more than %d locals in all", maxModuleLocals)
	}
	info.bodies = append(info.bodies, funcBody{sizeAt, start, b.off, end})
	return nil
}

// data reads a data segment.
func (r *reader) data() error {
	prefix, err := r.uleb(32)
	if err != nil {
		return err
	}
	switch prefix {
	case 0:
		err = r.constExpr()
	case 1:
	case 2:
		if _, err = r.uleb(32); err == nil {
			err = r.constExpr()
		}
	default:
		err = fmt.Errorf("data segment prefix %d", prefix)
	}
	if err != nil {
		return err
	}
	n, err := r.uleb(32)
	if err != nil {
		return err
	}
	return r.skip(n)
}

func sectionName(id byte) string {
	if int(id) < len(sectionNames) {
		return sectionNames[id]
	}
	return fmt.Sprintf("%d", id)
}

var sectionNames = []string{"custom", "type", "import", "function", "table", "memory", "global", "export", "start", "element", "code", "data", "data count", "tag"}

func (r *reader) imports(info *moduleInfo) error {
	return r.vector(func() (err error) {
		var imp moduleImport
		if imp.module, err = r.name(); err != nil {
			return err
		}
		if imp.name, err = r.name(); err != nil {
			return err
		}
		if imp.kind, err = r.byte(); err != nil {
			return err
		}
		switch imp.kind {
		case externFunc:
			_, err = r.uleb(32)
		case externTable:
			if err = r.refType(); err == nil {
				_, _, err = r.limits()
			}
		case externMemory:
			_, _, err = r.limits()
		case externGlobal:
			if err = r.refType(); err == nil {
				_, err = r.byte() // mutability
			}
		case externTag:
			if _, err = r.byte(); err == nil {
				_, err = r.uleb(32)
			}
		default:
			err = fmt.Errorf("import kind %#x", imp.kind)
		}
		if err != nil {
			return err
		}
		info.imports = append(info.imports, imp)
		return nil
	})
}

func (r *reader) tables(info *moduleInfo) error {
	return r.vector(func() error {
		withInit := false
		if r.off < len(r.b) && r.b[r.off] == 0x40 { // a table with an initializer
			if err := r.skip(1); err != nil {
				return err
			}
			if c, err := r.byte(); err != nil || c != 0 {
				return errors.New("malformed table initializer prefix")
			}
			withInit = true
		}
		if err := r.refType(); err != nil {
			return err
		}
		l, at, err := r.limits()
		if err != nil {
			return err
		}
		if at < len(r.b) && r.b[at] > 0x01 {
			return errors.New("shared table")
		}
		info.tables = append(info.tables, table{limits: l, maxAt: at, end: r.off})
		if withInit {
			return r.constExpr()
		}
		return nil
	})
}

func (r *reader) memories(info *moduleInfo) error {
	return r.vector(func() error {
		l, _, err := r.limits()
		if err != nil {
			return err
		}
		info.memories = append(info.memories, l)
		return nil
	})
}

// appendULEB appends v in unsigned LEB128.
func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

// entryCheck is an empty loop, put at the start of every function: wazero
// v1.12 checks the deadline at loop headers only, so without it a guest
// that recurses without looping could not be stopped.
var entryCheck = []byte{0x03, 0x40, 0x0b} // loop end

// rewriteModule returns bin with its tables bounded (see boundTables) and an
// entryCheck at the start of every function body, and the tables' total
// maximum in elements. Only the table and code sections change; their
// other bytes are kept as they are.
func rewriteModule(bin []byte, info moduleInfo) ([]byte, uint64, error) {
	tables, elems, err := boundTables(bin, info)
	if err != nil {
		return nil, 0, err
	}
	var code []byte
	if len(info.bodies) > 0 {
		c := info.codeSection
		code = make([]byte, 0, c.end-c.start+len(info.bodies)*(len(entryCheck)+1))
		code = append(code, bin[c.start:info.bodies[0].sizeAt]...) // the count
		for _, b := range info.bodies {
			code = appendULEB(code, uint64(b.end-b.locals+len(entryCheck)))
			code = append(code, bin[b.locals:b.code]...)
			code = append(code, entryCheck...)
			code = append(code, bin[b.code:b.end]...)
		}
	}
	if tables == nil && code == nil {
		return bin, elems, nil
	}
	out := make([]byte, 0, len(bin)+len(code)-(info.codeSection.end-info.codeSection.start)+len(tables))
	at := 0
	for _, r := range []struct {
		s       span
		id      byte
		payload []byte
	}{{info.tableSection, sectionTable, tables}, {info.codeSection, sectionCode, code}} {
		if r.payload == nil {
			continue
		}
		out = append(out, bin[at:r.s.header]...)
		out = append(out, r.id)
		out = appendULEB(out, uint64(len(r.payload)))
		out = append(out, r.payload...)
		at = r.s.end
	}
	return append(out, bin[at:]...), elems, nil
}

// boundTables returns the table section's payload with every table bounded
// (nil when none needs it), and the tables' total maximum in elements. A
// table keeps its declared maximum while the tables together stay within
// maxTableElements; a table that declares no maximum (Go's linker declares
// none), or one whose maximum would take them past it, is fixed at its
// minimum size: table.grow returns -1. Tables whose minimums alone exceed
// maxTableElements are refused.
func boundTables(bin []byte, info moduleInfo) ([]byte, uint64, error) {
	var mins uint64
	for _, t := range info.tables {
		mins += t.min
	}
	if mins > maxTableElements {
		return nil, 0, fmt.Errorf("table: module needs %d table elements, the limit is %d", mins, maxTableElements)
	}
	slack := maxTableElements - mins
	total := mins
	type rewrite struct {
		t   table
		max uint64
	}
	var rewrites []rewrite
	for _, t := range info.tables {
		if t.hasMax && t.max >= t.min && t.max-t.min <= slack {
			slack -= t.max - t.min
			total += t.max - t.min
			continue
		}
		rewrites = append(rewrites, rewrite{t, t.min})
	}
	if len(rewrites) == 0 {
		return nil, total, nil
	}
	// Everything as it was except the limits of the tables rewritten.
	var payload []byte
	at := info.tableSection.start
	for _, rw := range rewrites {
		payload = append(payload, bin[at:rw.t.maxAt]...)
		payload = append(payload, 0x01)
		payload = appendULEB(payload, rw.t.min)
		payload = appendULEB(payload, rw.max)
		at = rw.t.end
	}
	return append(payload, bin[at:info.tableSection.end]...), total, nil
}
