package cuda

import (
	"sync"

	cu "github.com/hotkernel/hotkernel/internal/cuda"
)

// hostCopy is the host's copy of an instance's state: its checkpoint.
// The memory is the process's own (not the context's), so that it
// outlives a context destroyed after a fault; it is page-locked in the
// current context (cuMemHostRegister) so that copies into it run
// asynchronously on the stream.
//
// Its condition is invalid (the device may have moved on), pending (a
// copy is enqueued and an event follows it) or valid. It is safe for
// concurrent use.
type hostCopy struct {
	mu         sync.Mutex
	buf        []byte
	registered uint64 // generation buf is registered in; 0 for none
	ev         *cu.Event
	evGen      uint64
	cond       int
}

const (
	copyInvalid = iota
	copyPending
	copyValid
)

// ensure makes buf n bytes long and registers it in c (generation gen).
// A failed registration only makes copies synchronous.
func (h *hostCopy) ensure(c *cu.Context, gen uint64, n int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.buf) != n {
		if h.buf != nil {
			if h.registered == gen {
				_ = c.HostUnregister(h.buf)
			}
			freeHostMemory(h.buf)
			h.buf, h.registered = nil, 0
		}
		b, err := allocHostMemory(n)
		if err != nil {
			return err
		}
		h.buf = b
		h.cond = copyInvalid
	}
	if h.registered != gen {
		if err := c.HostRegister(h.buf); err == nil {
			h.registered = gen
		}
	}
	return nil
}

func (h *hostCopy) bytes() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf
}

// record marks the copy just enqueued on s as pending, with an event
// after it.
func (h *hostCopy) record(c *cu.Context, s *cu.Stream) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ev == nil || h.evGen != h.registered {
		ev, err := c.NewEvent()
		if err != nil {
			return err
		}
		h.ev, h.evGen = ev, h.registered
	}
	if err := h.ev.Record(s); err != nil {
		return err
	}
	h.cond = copyPending
	return nil
}

// wait waits for a pending copy; nil when the copy is valid.
func (h *hostCopy) wait() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.cond {
	case copyValid:
		return nil
	case copyPending:
		if err := h.ev.Synchronize(); err != nil {
			return err
		}
		h.cond = copyValid
		return nil
	}
	return ErrStateLost
}

// valid reports whether the copy is complete and current.
func (h *hostCopy) valid() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cond == copyValid
}

func (h *hostCopy) setValid() {
	h.mu.Lock()
	h.cond = copyValid
	h.mu.Unlock()
}

func (h *hostCopy) invalidate() {
	h.mu.Lock()
	h.cond = copyInvalid
	h.mu.Unlock()
}

// free releases the memory; live says c is the context it is registered
// in and still usable.
func (h *hostCopy) free(c *cu.Context, live bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if live && h.ev != nil {
		_ = h.ev.Destroy()
	}
	if h.buf != nil {
		if live && h.registered != 0 {
			_ = c.HostUnregister(h.buf)
		}
		freeHostMemory(h.buf)
	}
	h.buf, h.ev, h.registered, h.cond = nil, nil, 0, copyInvalid
}

// forget drops the registration and any pending copy after the context
// they belonged to was destroyed; a complete copy stays valid.
func (h *hostCopy) forget() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.registered, h.ev = 0, nil
	if h.cond == copyPending {
		h.cond = copyInvalid
	}
}
