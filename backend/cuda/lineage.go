package cuda

import (
	"fmt"
	"sync"

	cu "github.com/hotkernel/hotkernel/internal/cuda"
)

// lineage is the CUDA context one kernel's instances share: an instance
// started with Init or ImportState makes one, and the instance of the
// next code version joins it (PrepareAdopt, AdoptState), so that the
// state stays in place in device memory across a swap. Kernels do not
// share contexts: a fault that poisons one kernel's context leaves the
// others running.
//
// A sticky error poisons the context. The next instance that needs it
// destroys it and makes a new one (a new generation); every instance of
// the lineage then loads its module again and restores its state from
// its host copy, if it has one.
type lineage struct {
	b *Backend

	mu       sync.Mutex
	ctx      *cu.Context
	stream   *cu.Stream // every launch and copy of the lineage, in order
	gen      uint64
	poisoned error
	refs     int
	done     bool
}

// newLineage makes a new context with one stream, referenced once.
func (b *Backend) newLineage() (*lineage, error) {
	if b.isClosed() {
		return nil, fmt.Errorf("cuda: backend %w", ErrClosed)
	}
	l := &lineage{b: b, refs: 1}
	if err := l.open(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = l.destroy()
		return nil, fmt.Errorf("cuda: backend %w", ErrClosed)
	}
	b.lineages[l] = struct{}{}
	b.mu.Unlock()
	return l, nil
}

// open makes the context and stream of a new generation. l.mu is held or
// l is not shared yet.
func (l *lineage) open() error {
	c, err := l.b.drv.NewContext(l.b.dev)
	if err != nil {
		return err
	}
	s, err := c.NewStream()
	if err != nil {
		_ = c.Destroy()
		return err
	}
	l.ctx, l.stream, l.poisoned = c, s, nil
	l.gen++
	return nil
}

// acquire adds a reference; false when the lineage is already gone.
func (l *lineage) acquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return false
	}
	l.refs++
	return true
}

// release drops a reference and destroys the context with the last.
func (l *lineage) release() {
	l.mu.Lock()
	l.refs--
	last := l.refs == 0 && !l.done
	l.mu.Unlock()
	if !last {
		return
	}
	l.b.mu.Lock()
	delete(l.b.lineages, l)
	l.b.mu.Unlock()
	if err := l.destroy(); err != nil {
		l.b.log.Warn("destroying a CUDA context failed", "err", err)
	}
}

// destroy destroys the context. Idempotent.
func (l *lineage) destroy() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return nil
	}
	l.done = true
	return l.ctx.Destroy()
}

// poison records a sticky error (or a launch that never ended): the
// context is unusable until current replaces it.
func (l *lineage) poison(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.poisoned == nil {
		l.poisoned = err
	}
}

// current returns the usable context, stream and generation, replacing a
// poisoned context with a new one first.
func (l *lineage) current() (*cu.Context, *cu.Stream, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return nil, nil, 0, fmt.Errorf("cuda: context %w", ErrClosed)
	}
	if l.poisoned != nil {
		l.b.log.Warn("CUDA context poisoned; destroying it and making a new one", "err", l.poisoned, "generation", l.gen)
		if err := l.ctx.Destroy(); err != nil {
			l.b.log.Warn("destroying the poisoned context reported an error", "err", err)
		}
		if err := l.open(); err != nil {
			l.done = true
			return nil, nil, 0, fmt.Errorf("cuda: make a new context after a fault: %w", err)
		}
	}
	return l.ctx, l.stream, l.gen, nil
}
