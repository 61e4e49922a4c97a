package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/store"
)

// A running flow's context (Node-RED's flow context): a key-value state
// per flow that module runs read in their input and write declaratively
// with compare-and-swap. The exec running the flow is its only writer, so
// the compare-and-swap is against the context in memory, and the writes
// go to the store behind the module runs, in order, those that came
// meanwhile as one (each stored value is the whole context): a module
// that writes the context takes its next message without waiting for the
// store. What is reported done waits for it: a flow run ends (recorded,
// its message removed from the queue, its fire answered) only once the
// writes of its module runs are stored. One whose write the store did not
// take stays queued and runs again at the flow's next start, its module
// runs reused and their writes applied unless the stored context names
// them among its writers. One whose write found the stored context
// changed by another writer (not this exec) fails, as a module run's
// write that conflicts does: the writes made here since the last one
// stored are dropped and the context is read again.

// flowContext is a running flow's context.
type flowContext struct {
	mu   sync.Mutex
	cond *sync.Cond // broadcast when a write is applied, stored or lost
	// c is the context with every write applied; c.Revision is the
	// stored one's. Its map and slice are never changed in place (a write
	// makes new ones), so the writer reads them outside the lock.
	c       store.FlowContext
	size    int    // c's values' JSON size (entries, without separators)
	applied uint64 // writes applied to c, counted from 1
	stored  uint64 // the last of them stored (and those before it, but the lost)
	lost    uint64 // the last of them the store did not take
	lostErr error
	// dropped are the writes the store did not take, each range with
	// why: a write lost is never reported stored because a later one was.
	// The newest maxDropped ranges are kept (each is a store failure,
	// logged, and a flow run waits for its write within its own run).
	dropped []droppedWrites
	writing bool // a writer goroutine runs
}

// droppedWrites are the writes numbered after from, up to to, that the
// store did not take, and why.
type droppedWrites struct {
	from, to uint64
	err      error
}

// maxDropped bounds flowContext.dropped.
const maxDropped = 1024

// drop notes writes after from up to to as lost with err.
func (fc *flowContext) drop(from, to uint64, err error) {
	fc.lost, fc.lostErr = to, err
	if len(fc.dropped) == maxDropped {
		fc.dropped = fc.dropped[1:]
	}
	fc.dropped = append(fc.dropped, droppedWrites{from, to, err})
}

// droppedErr is why write w was lost, or nil.
func (fc *flowContext) droppedErr(w uint64) error {
	for _, d := range fc.dropped {
		if w > d.from && w <= d.to {
			return d.err
		}
	}
	return nil
}

// contextSlack is how close to store.MaxFlowContext the tracked size may
// come before a write is measured exactly (the writers' ids and the
// separators are outside the tracked size).
const contextSlack = 64 << 10

// load sets the context the flow starts with.
func (fc *flowContext) load(c store.FlowContext) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.cond == nil {
		fc.cond = sync.NewCond(&fc.mu)
	}
	fc.setLocked(c)
}

// setLocked replaces the context; fc.mu is held.
func (fc *flowContext) setLocked(c store.FlowContext) {
	fc.c, fc.size = c, 0
	for k, v := range c.Values {
		fc.size += entrySize(k, v)
	}
}

// entrySize is the JSON size of key k with value v in the stored context.
func entrySize(k string, v json.RawMessage) int {
	kb, _ := json.Marshal(k)
	vb, err := json.Marshal(v)
	if err != nil {
		return len(kb) + 1 + 6*len(v) // not valid JSON: the store refuses it
	}
	return len(kb) + 1 + len(vb)
}

// loadFlowContext is flow id's stored context, or, when none is stored
// yet, the document's initial one, stored.
func (n *Node) loadFlowContext(ctx context.Context, id string, initial map[string]any) (store.FlowContext, error) {
	c, err := n.store.FlowContextOf(ctx, id)
	if err != nil || c.Revision != 0 || len(initial) == 0 {
		return c, err
	}
	for k, v := range initial {
		if c.Values[k], err = json.Marshal(v); err != nil {
			return c, fmt.Errorf("flow %s: context.%s: %w", id, k, err)
		}
	}
	if c.Revision, err = n.store.PutFlowContext(ctx, id, c); err != nil {
		return c, err
	}
	return c, nil
}

// contextSnapshot is a copy of the flow's context for a module run.
func (e *flowExec) contextSnapshot() map[string]json.RawMessage {
	fc := &e.fctx
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return maps.Clone(fc.c.Values)
}

// writeContext applies module run runID's write of the flow context and
// returns its number, for contextStored (0: nothing to wait for). Each
// key it sets or deletes must still hold what the run read (snap; nil for
// a run reused after a replay, whose write is applied unless the context
// names it among its writers). A key written meanwhile is a conflict, and
// nothing of the write is applied; so is a write that would make the
// context larger than the store keeps.
func (e *flowExec) writeContext(runID string, snap map[string]json.RawMessage, change *contract.StateChange) (uint64, error) {
	fc := &e.fctx
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if slices.Contains(fc.c.Writers, runID) {
		return 0, nil // applied before the replay
	}
	keys := slices.Collect(maps.Keys(change.Set))
	keys = append(keys, change.Delete...)
	slices.Sort(keys)
	if snap != nil {
		for _, k := range keys {
			if !bytes.Equal(fc.c.Values[k], snap[k]) {
				return 0, fmt.Errorf("flow_context: key %q changed since the run read it (compare-and-swap); nothing of its write was applied: %w", k, errContextConflict)
			}
		}
	}
	next := store.FlowContext{Values: maps.Clone(fc.c.Values), Writers: slices.Clone(fc.c.Writers), Revision: fc.c.Revision}
	size := fc.size
	for _, k := range change.Delete {
		if v, ok := next.Values[k]; ok {
			size -= entrySize(k, v)
			delete(next.Values, k)
		}
	}
	for k, v := range change.Set {
		if old, ok := next.Values[k]; ok {
			size -= entrySize(k, old)
		}
		next.Values[k] = v
		size += entrySize(k, v)
	}
	next.Wrote(runID)
	if size > store.MaxFlowContext-contextSlack {
		b, err := json.Marshal(next)
		if err != nil {
			return 0, fmt.Errorf("flow_context: %w; nothing of this run's write was applied", err)
		}
		if len(b) > store.MaxFlowContext {
			return 0, fmt.Errorf("flow_context: the context would be %d bytes, at most %d; nothing of this run's write was applied", len(b), store.MaxFlowContext)
		}
	}
	fc.c, fc.size = next, size
	fc.applied++
	if !fc.writing {
		fc.writing = true
		go e.storeContext()
	}
	return fc.applied, nil
}

// storeContext stores the flow's context until every write applied is
// stored or lost, the writes that came while one was being stored as one.
// A panic here loses the writes pending (their flow runs stay queued)
// and never the node.
func (e *flowExec) storeContext() {
	fc := &e.fctx
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for fc.applied > max(fc.stored, fc.lost) {
		upTo, c := fc.applied, fc.c
		fc.mu.Unlock()
		rev, err := e.safePutContext(c)
		var stored *store.FlowContext
		if errors.Is(err, store.ErrConflict) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if sc, rerr := e.n.store.FlowContextOf(ctx, e.id); rerr == nil {
				stored = &sc
			}
			cancel()
		}
		fc.mu.Lock()
		switch {
		case err == nil:
			fc.stored, fc.c.Revision = upTo, rev
		case errors.Is(err, store.ErrConflict):
			// Written meanwhile by someone else: the writes applied here
			// were made over a context the store no longer holds. Their
			// flow runs fail, and the flow goes on from the stored one.
			e.log.Error("flow context written meanwhile by another writer: the writes made here since the last one stored are dropped and their flow runs fail", logErr, err)
			fc.drop(max(fc.stored, fc.lost), fc.applied, fmt.Errorf("flow_context: written meanwhile by another writer; this flow run's write was dropped: %w", errContextConflict))
			if stored != nil {
				fc.setLocked(*stored)
			}
		default:
			e.log.Error("flow context not stored: the flow runs that wrote it stay queued and run again at the flow's next start", "writes", upTo-max(fc.stored, fc.lost), logErr, err)
			fc.drop(max(fc.stored, fc.lost), upTo, err)
		}
		fc.cond.Broadcast()
	}
	fc.writing = false
	fc.cond.Broadcast()
}

// safePutContext is putContext, a panic in it an error.
func (e *flowExec) safePutContext(c store.FlowContext) (rev uint64, err error) {
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("panic storing the flow context", "panic", p, "stack", string(debug.Stack()))
			rev, err = 0, fmt.Errorf("panic in the runner: %v", p)
		}
	}()
	return e.putContext(c)
}

// putContext stores c, retrying briefly.
func (e *flowExec) putContext(c store.FlowContext) (uint64, error) {
	var err error
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var rev uint64
		rev, err = e.n.store.PutFlowContext(ctx, e.id, c)
		cancel()
		if err == nil {
			return rev, nil
		}
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrFull) {
			return 0, err
		}
		time.Sleep(time.Duration(50<<(2*i)) * time.Millisecond)
	}
	return 0, err
}

// contextStored waits until write number w (writeContext) is stored; the
// error is the store's when it was not, wrapping errContextConflict when
// another writer had changed the stored context.
func (e *flowExec) contextStored(w uint64) error {
	fc := &e.fctx
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for {
		if err := fc.droppedErr(w); err != nil {
			if errors.Is(err, errContextConflict) {
				return err
			}
			return fmt.Errorf("flow_context: not stored: %w", err)
		}
		if fc.stored >= w {
			return nil
		}
		fc.cond.Wait()
	}
}

// flushContext waits until every write applied is stored or lost: a
// stopped flow's next exec reads the stored context.
func (e *flowExec) flushContext() {
	fc := &e.fctx
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for fc.applied > max(fc.stored, fc.lost) || fc.writing {
		fc.cond.Wait()
	}
}

// errContextConflict says a module run's write of the flow context was
// refused: a key it writes changed since it read it.
var errContextConflict = errors.New("conflict")
