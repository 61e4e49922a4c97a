package wasm

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"
)

// budget is the node-wide memory budget of the wasm guests: every live
// instance (a warm reactor in a pool, a command running) holds a reservation
// of its most memory (its linear memory's maximum, capped by the memory
// limit, and its tables) until it is closed. An instantiation that does not
// fit waits, first come first served, until enough is released or its
// context is done. Safe for concurrent use.
type budget struct {
	total int64

	mu      sync.Mutex
	used    int64
	holders int              // reservations held
	waiters list.List        // of *budgetWaiter, oldest first
	evict   func(need int64) // closes idle instances to free need bytes; may be nil
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed when the reservation is granted
}

// budgetError is why an instantiation did not get its reservation in time.
type budgetError struct {
	need, used, total int64
	holders           int
	waited            time.Duration
}

func (e *budgetError) Error() string {
	return fmt.Sprintf("node memory budget for wasm guests exhausted: waited %v for %s, %s of %s reserved by %d other instances",
		e.waited.Round(time.Millisecond), sizeString(uint64(e.need)), sizeString(uint64(e.used)), sizeString(uint64(e.total)), e.holders)
}

// acquire reserves n bytes, waiting until they fit or ctx is done. When they
// do not fit at once, it first asks evict to close idle instances. On ctx
// done it returns a *budgetError.
func (b *budget) acquire(ctx context.Context, n int64) error {
	if n <= 0 {
		return nil
	}
	start := time.Now()
	evicted := false
	for {
		b.mu.Lock()
		if b.used+n <= b.total && b.waiters.Len() == 0 {
			b.used += n
			b.holders++
			b.mu.Unlock()
			return nil
		}
		if !evicted && b.evict != nil {
			need := b.used + n - b.total
			for e := b.waiters.Front(); e != nil; e = e.Next() {
				need += e.Value.(*budgetWaiter).n
			}
			evict := b.evict
			b.mu.Unlock()
			evicted = true
			evict(need)
			continue
		}
		w := &budgetWaiter{n: n, ready: make(chan struct{})}
		elem := b.waiters.PushBack(w)
		b.mu.Unlock()

		select {
		case <-w.ready:
			return nil
		case <-ctx.Done():
		}
		b.mu.Lock()
		select {
		case <-w.ready: // granted while ctx was done: give it back
			b.used -= n
			b.holders--
		default:
			b.waiters.Remove(elem)
		}
		b.grantLocked() // the waiters behind this one may fit now
		err := &budgetError{need: n, used: b.used, total: b.total, holders: b.holders, waited: time.Since(start)}
		b.mu.Unlock()
		return err
	}
}

// release returns a reservation of n bytes.
func (b *budget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.holders--
	b.grantLocked()
	b.mu.Unlock()
}

// grantLocked grants the oldest waiters' reservations while they fit.
func (b *budget) grantLocked() {
	for e := b.waiters.Front(); e != nil; e = b.waiters.Front() {
		w := e.Value.(*budgetWaiter)
		if b.used+w.n > b.total {
			return
		}
		b.used += w.n
		b.holders++
		b.waiters.Remove(e)
		close(w.ready)
	}
}

// waiting reports whether an instantiation is waiting for memory; an idle
// instance is then closed rather than kept warm.
func (b *budget) waiting() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiters.Len() > 0
}

// reserved returns the bytes reserved and the number of reservations.
func (b *budget) reserved() (int64, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.holders
}
