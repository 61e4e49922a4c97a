package wasm

import (
	"bytes"
	"container/list"
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// randReader is the guests' source of random bytes.
var randReader = rand.Reader

// instance is one instantiated guest. It is used by one invocation at a time:
// a command instance for exactly one, a reactor instance for many in turn.
// It holds a reservation of the node's memory budget from instantiate to
// close.
type instance struct {
	mod    api.Module   // nil until instantiated
	memory api.Memory   // the exported memory; reactors only
	alloc  api.Function // reactors only
	invoke api.Function // reactors only
	stack  []uint64     // reused for CallWithStack

	mem  *linearMemory
	logs headTail // stderr (and stdout, for reactors)
	out  capped   // stdout, for commands

	// done is the current invocation's ctx.Done(), so that a sleeping guest
	// wakes at the deadline. Set before each call, on the calling goroutine.
	done <-chan struct{}

	budget   *budget
	reserved int64         // bytes of the budget this instance holds
	lru      *list.Element // in the driver's idle order while idle (guarded by its mu)
	closed   atomic.Bool
}

// newInstance returns an instance of the deployment that is not yet
// instantiated; closing it is a no-op until instantiate.
func (d *deployment) newInstance() *instance {
	return &instance{
		mem:    &linearMemory{limit: d.memLimit},
		logs:   headTail{max: d.maxLog},
		out:    capped{max: d.maxOutput},
		budget: d.driver.budget,
	}
}

// instantiate reserves the instance's memory from the budget, waiting for
// it until ctx is done (a *budgetError), and instantiates the deployment's
// module; that runs the module's start function, if it has one, but not its
// WASI entry point. stdin is the command's input.
func (d *deployment) instantiate(ctx context.Context, inst *instance, stdin []byte) (err error) {
	if err := inst.budget.acquire(ctx, d.reserve); err != nil {
		return err
	}
	inst.reserved = d.reserve
	cfg := d.base.WithStderr(&inst.logs).WithNanosleep(inst.sleep)
	if d.shape == command {
		cfg = cfg.WithStdin(bytes.NewReader(stdin)).WithStdout(&inst.out)
		if args := sandbox.ArgsOf(ctx); len(args) > 0 {
			cfg = cfg.WithArgs(append([]string{d.name}, args...)...)
		}
	} else {
		cfg = cfg.WithStdout(&inst.logs)
	}
	inst.done = ctx.Done() // a start function may sleep
	defer func() {
		// wazero cannot be told that an allocator failed to give a memory
		// its initial size, and panics. Deploy refuses a minimum above the
		// limit, so this is a guard, not a path.
		if r := recover(); r != nil {
			if !inst.mem.refused {
				panic(r)
			}
			err = fmt.Errorf("memory: the module's initial memory is over the limit of %s", sizeString(d.memLimit))
		}
	}()
	mod, err := d.driver.rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, inst.mem), d.compiled, cfg)
	if err != nil {
		return err
	}
	inst.mod = mod
	if d.shape == reactor {
		inst.memory = mod.ExportedMemory(exportMemory)
		inst.alloc = mod.ExportedFunction(exportAlloc)
		inst.invoke = mod.ExportedFunction(exportInvoke)
		inst.stack = make([]uint64, 2)
	}
	return nil
}

// close releases the instance and its reservation. Safe to call more than
// once, and on an instance the guest already closed or that was never
// instantiated.
func (inst *instance) close() {
	if inst.closed.Swap(true) {
		return
	}
	defer inst.budget.release(inst.reserved)
	if inst.mod != nil {
		_ = inst.mod.Close(context.Background())
	}
}

// sleep is the guest's nanosleep (poll_oneoff with a clock): real time, cut
// short when the invocation's context is done so that the deadline stops a
// sleeping guest as promptly as a spinning one.
func (inst *instance) sleep(ns int64) {
	if ns <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(ns))
	select {
	case <-t.C:
	case <-inst.done:
	}
	t.Stop()
}

// linearMemory backs a guest's linear memory and enforces the deployment's
// memory cap. A refused grow is recorded: that is how an invocation that
// dies after it is told apart as out of memory, whatever the guest's
// language prints or does when its allocator fails.
//
// A memory starts as a Go slice that doubles as it grows. Past
// heapMemoryMax, where the system allows (Linux), it moves once to a
// reservation of the whole cap (address space nothing can touch yet), and
// each later grow makes more of the reservation accessible: no copy, no
// zeroing (the kernel gives zeroed pages as the guest first touches them),
// microseconds at any size. A grow that copied took 285 ms for 68 MiB on a
// busy machine and cannot be interrupted, so a guest growing its memory
// ran that far past its deadline; the one move copies at most
// heapMemoryMax. Small memories stay on the Go heap: a fresh reservation
// for every command-mode run doubled its time (the syscalls, and a page
// fault for each page a Go guest's runtime touches, where the heap hands
// back pages already touched).
//
// Free unmaps a reservation: nothing may touch the memory after it. wazero
// frees a memory only when its module's resources are closed (the
// instance's close, by the goroutine that ran it or on an idle instance;
// a deadline closes a module without freeing), and every byte read out of
// a guest is copied before its instance is released.
type linearMemory struct {
	buf      []byte
	reserved []byte // the reservation (len: bytes reserved), or nil
	open     uint64 // bytes of the reservation made accessible
	max      uint64 // the module's own maximum, in bytes
	limit    uint64 // bytes, a multiple of the page size
	size     uint64 // current length in bytes; kept after Free
	refused  bool   // a grow past limit was refused since the last reset
	heapOnly bool   // the system refused a reservation: stay on the heap
}

// heapMemoryMax is the largest memory kept as a Go slice (see linearMemory).
const heapMemoryMax = 16 << 20

var _ experimental.MemoryAllocator = (*linearMemory)(nil)

// Allocate implements experimental.MemoryAllocator. Each instance has its own
// linearMemory, so it returns itself.
func (m *linearMemory) Allocate(capacity, max uint64) experimental.LinearMemory {
	m.max = max
	m.buf = make([]byte, 0, min(capacity, m.limit, heapMemoryMax))
	return m
}

// Reallocate implements experimental.LinearMemory. It grows the memory to size
// bytes, or returns nil (memory.grow then returns -1 to the guest) past the
// cap. On the heap, capacity doubles, up to the cap, so growth copies
// O(log n) times. wazero also calls it for the memory's initial size,
// where nil makes it panic: Deploy refuses a module whose minimum is over
// the cap, so that never happens, and instantiate turns it into an error
// if it did.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		m.refused = true
		return nil
	}
	if m.reserved == nil && size > heapMemoryMax && !m.heapOnly {
		if r := reserve(min(m.max, m.limit)); r != nil && uint64(len(r)) >= size {
			m.reserved = r
			if !m.openTo(size) {
				m.reserved = nil
				release(r)
				return nil
			}
			copy(r, m.buf)
			m.buf = nil
		} else {
			if r != nil {
				release(r)
			}
			m.heapOnly = true
		}
	}
	if m.reserved != nil {
		if !m.openTo(size) {
			return nil
		}
		m.buf = m.reserved[:size:size]
		m.size = size
		return m.buf
	}
	if size > uint64(cap(m.buf)) {
		grown := make([]byte, size, max(size, min(2*uint64(cap(m.buf)), m.limit)))
		copy(grown, m.buf)
		m.buf = grown
	}
	m.buf = m.buf[:size]
	m.size = size
	return m.buf
}

// openTo makes the reservation accessible up to size bytes. A refusal (the
// system would not commit the pages, or size is past the reservation) is
// told to the guest as a refused grow.
func (m *linearMemory) openTo(size uint64) bool {
	if size <= m.open {
		return true
	}
	if size > uint64(len(m.reserved)) || openPages(m.reserved[m.open:size]) != nil {
		m.refused = true
		return false
	}
	m.open = size
	return true
}

// Free implements experimental.LinearMemory.
func (m *linearMemory) Free() {
	m.buf = nil
	if r := m.reserved; r != nil {
		m.reserved, m.open = nil, 0
		release(r)
	}
}

// capped keeps up to max bytes and notes whether more was written. Writes
// never fail, so a guest is not told its output was cut.
type capped struct {
	buf  []byte
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if c.over || len(c.buf)+len(p) > c.max {
		c.over = true
		return len(p), nil
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// headTail keeps what a guest logs, up to max bytes: the first quarter (a Go
// panic's message is its first line) and the last three quarters (the end of
// any log). What falls between is dropped and marked.
type headTail struct {
	head []byte
	tail []byte
	max  int
	cut  bool

	lines *lineSplitter // the current run's log, or nil
}

func (t *headTail) Write(p []byte) (int, error) {
	n := len(p)
	if t.lines != nil {
		t.lines.write(p)
	}
	if room := t.max/4 - len(t.head); room > 0 {
		k := min(room, len(p))
		t.head = append(t.head, p[:k]...)
		p = p[k:]
	}
	keep := t.max - t.max/4
	if len(p) > keep {
		t.tail = append(t.tail[:0], p[len(p)-keep:]...)
		t.cut = true
		return n, nil
	}
	t.tail = append(t.tail, p...)
	if over := len(t.tail) - keep; over > 0 {
		t.tail = t.tail[:copy(t.tail, t.tail[over:])]
		t.cut = true
	}
	return n, nil
}

func (t *headTail) reset() {
	t.head, t.tail, t.cut = t.head[:0], t.tail[:0], false
}

func (t *headTail) empty() bool { return len(t.head) == 0 }

// String returns what was kept, with "\n...\n" where bytes were dropped, as
// valid UTF-8 (a cut may split a character).
func (t *headTail) String() string {
	tail := t.tail
	if t.cut {
		for len(tail) > 0 && !utf8.RuneStart(tail[0]) {
			tail = tail[1:]
		}
	}
	s := string(t.head)
	if t.cut {
		s += "\n...\n"
	}
	s += string(tail)
	return strings.ToValidUTF8(strings.TrimRight(s, "\n"), "\uFFFD")
}
