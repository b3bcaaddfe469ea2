package cuda

import (
	"errors"
	"sync"
)

// object is the state shared by the things a context owns: modules,
// streams and events.
type object struct {
	ctx    *Context
	kind   string       // "module", "stream" or "event", for errors
	mu     sync.RWMutex // held for reading by calls, for writing by the release
	handle uintptr
	dead   bool
}

// usable returns nil for an object made by this package.
func (o *object) usable(op, kind string) error {
	if o == nil || o.ctx == nil {
		return invalid(op, "the %s was not obtained from this package", kind)
	}
	return o.ctx.usable(op)
}

// enter begins a call named op on the object: the context's enter, then
// the object's read lock, failing with ErrDestroyed after the release. On
// success the caller must call leave.
func (o *object) enter(op, kind string) error {
	if err := o.usable(op, kind); err != nil {
		return err
	}
	if err := o.ctx.enter(op); err != nil {
		return err
	}
	o.mu.RLock()
	if o.dead {
		o.mu.RUnlock()
		o.ctx.leave()
		return destroyed(op, o.kind)
	}
	return nil
}

// leave ends a call begun by enter.
func (o *object) leave() {
	o.mu.RUnlock()
	o.ctx.leave()
}

// release runs the driver call that frees the object, once: it waits for
// calls in progress on the object, marks it released and calls free with
// the handle. Later calls, and calls after the context was destroyed
// (which released the object with it), return nil.
func (o *object) release(op, kind string, free func(handle uintptr) Result) error {
	if err := o.usable(op, kind); err != nil {
		return err
	}
	if err := o.ctx.enter(op); err != nil {
		if errors.Is(err, ErrDestroyed) {
			return nil
		}
		return err
	}
	defer o.ctx.leave()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dead {
		return nil
	}
	o.dead = true
	return o.ctx.drv.check(op, free(o.handle))
}
