package wasm

import (
	"container/list"
	"sync"
)

// idleLRU orders the warm reactor instances of all of a driver's
// deployments, the most recently used at the front, so that the memory
// budget's eviction (Driver.evictIdle) closes the one idle longest in
// constant time, however many deployments the driver holds.
//
// Lock order: a deployment's mu before the driver's idle.mu. The list is
// only an order: an instance is idle while it is in its deployment's idle
// slice; an element of the list whose instance was taken since is skipped.
type idleLRU struct {
	mu   sync.Mutex
	list list.List // of idleEntry
}

type idleEntry struct {
	dep  *deployment
	inst *instance
}

// push puts inst, just made idle in dep, at the front. Called with dep.mu
// held.
func (l *idleLRU) push(dep *deployment, inst *instance) {
	l.mu.Lock()
	if inst.lru != nil {
		l.list.Remove(inst.lru)
	}
	inst.lru = l.list.PushFront(idleEntry{dep, inst})
	l.mu.Unlock()
}

// remove takes inst out of the order: it is in use or closed. Called with
// its deployment's mu held.
func (l *idleLRU) remove(inst *instance) {
	l.mu.Lock()
	if inst.lru != nil {
		l.list.Remove(inst.lru)
		inst.lru = nil
	}
	l.mu.Unlock()
}

// oldest takes the entry idle longest out of the order, or returns false
// when there is none.
func (l *idleLRU) oldest() (idleEntry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.list.Back()
	if e == nil {
		return idleEntry{}, false
	}
	l.list.Remove(e)
	ent := e.Value.(idleEntry)
	ent.inst.lru = nil
	return ent, true
}

// len is how many instances are in the order.
func (l *idleLRU) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.list.Len()
}
