package queue

import (
	"context"
	"sync"
	"sync/atomic"
)

// waiter lets goroutines sleep until another goroutine changes the
// queue's state, at no cost to that goroutine while nobody sleeps.
//
// A sleeper calls prepare, checks its condition again, and sleeps on the
// returned channel only if the condition still does not hold. Leaving
// after prepare needs no undo: a stale armed flag costs at most one
// needless wakeAll. A goroutine that changes the state makes its change
// with an atomic store, then loads armed and calls wakeAll if it is set.
//
// No wake-up is lost. prepare fetches the sleeper's channel while armed
// is set (it sets it if needed), before the sleeper's last check; armed
// is cleared only by the wakeAll that closes that channel. These are all
// sequentially consistent atomics (plus a mutex), so if the last check
// misses the change, the changer's load of armed comes after the check
// and sees either true, and its wakeAll closes the sleeper's channel
// (unless another wakeAll already has), or
// false stored by a wakeAll that has already closed it.
type waiter struct {
	// armed is true while a channel has been handed out by prepare and
	// not yet closed by wakeAll.
	armed atomic.Bool
	mu    sync.Mutex
	ch    chan struct{} // nil when not armed
}

// prepare registers the caller as a sleeper and returns the channel the
// next wakeAll closes.
func (w *waiter) prepare() <-chan struct{} {
	w.mu.Lock()
	if w.ch == nil {
		w.ch = make(chan struct{})
		w.armed.Store(true)
	}
	ch := w.ch
	w.mu.Unlock()
	return ch
}

// sleep waits for ch to be closed or ctx to be done, and returns ctx's
// error in the second case.
func (w *waiter) sleep(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wakeAll wakes every goroutine sleeping on the channel handed out since
// the last wakeAll.
func (w *waiter) wakeAll() {
	w.mu.Lock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
		w.armed.Store(false)
	}
	w.mu.Unlock()
}
