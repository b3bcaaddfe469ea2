//go:build linux

package wasm

import (
	"context"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// On Linux every instance's linear memory lives in a memfd of its own,
// mapped shared over the largest size the memory may grow to, so that its
// address never moves and whole pages of it can be mapped into another
// instance (see AdoptState). tmpfs is sparse: pages never touched cost
// nothing.

// memFile is a memfd shared by the instances whose state pages map it.
// refs counts one for the instance whose linear memory it is, while that
// instance is open, and one for each open instance that adopted state
// from it. The descriptor is closed when the count drops to zero; the
// mappings keep the file's pages alive on their own.
type memFile struct {
	fd   int
	refs atomic.Int32
}

func (f *memFile) ref() *memFile {
	f.refs.Add(1)
	return f
}

func (f *memFile) unref() {
	if f.refs.Add(-1) == 0 {
		_ = unix.Close(f.fd)
	}
}

// linearMemory is a wazero LinearMemory backed by a memFile. The whole
// reservation is mapped once; Reallocate only lengthens the slice.
type linearMemory struct {
	own  *memFile
	addr unsafe.Pointer
	mem  []byte // the whole reservation
	used bool   // handed to wazero by Allocate
}

// newLinearMemory creates a memfd of size bytes and maps it. It returns
// nil when the system refuses (no memfd, no address space); the instance
// then uses wazero's own memory and copies state.
func newLinearMemory(size uint64) *linearMemory {
	if size == 0 || size > 1<<32 {
		return nil
	}
	fd, err := unix.MemfdCreate("hotkernel-memory", unix.MFD_CLOEXEC)
	if err != nil {
		return nil
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		_ = unix.Close(fd)
		return nil
	}
	addr, err := unix.MmapPtr(fd, 0, nil, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Close(fd)
		return nil
	}
	lm := &linearMemory{own: &memFile{fd: fd}, addr: addr, mem: unsafe.Slice((*byte)(addr), size)}
	lm.own.refs.Store(1)
	return lm
}

// Allocate implements experimental.MemoryAllocator: the first memory of
// the module gets the mapping; a second one, or one that could grow past
// the reservation, gets ordinary Go memory.
func (lm *linearMemory) Allocate(capacity, maxBytes uint64) experimental.LinearMemory {
	if lm.used || maxBytes > uint64(len(lm.mem)) {
		return &heapMemory{buf: make([]byte, 0, capacity)}
	}
	lm.used = true
	return lm
}

// Reallocate implements experimental.LinearMemory: the first size bytes
// of the reservation, always at the same address; nil past it.
func (lm *linearMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(lm.mem)) {
		return nil
	}
	return lm.mem[:size]
}

// Free implements experimental.LinearMemory. wazero calls it when the
// module closes, which happens when an instance dies too; the mapping is
// kept so that a dead instance's state stays readable, and is released by
// Instance.Close.
func (lm *linearMemory) Free() {}

// heapMemory is a LinearMemory in Go memory, as wazero would allocate it.
type heapMemory struct{ buf []byte }

func (h *heapMemory) Reallocate(size uint64) []byte {
	if size > uint64(cap(h.buf)) {
		h.buf = append(h.buf[:cap(h.buf)], make([]byte, size-uint64(cap(h.buf)))...)
	}
	h.buf = h.buf[:size]
	return h.buf
}

func (h *heapMemory) Free() {}

// handover is the Linux part of an Instance: its memfd-backed memory and
// the file its state pages map.
//
// The state pages are [statePtr, statePtr + stateLen rounded down to a
// page) of the linear memory. They map either the instance's own memfd,
// shared (base == lm.own: writes go to the file), or, after AdoptState,
// another instance's memfd privately at baseOff (base != lm.own: the
// pages the instance writes become private copies, the others show the
// file). A state tail shorter than a page stays in the instance's own
// memory and is copied. After PrepareAdopt, base is the source's file,
// mapped privately, and prepared is set until AdoptState completes.
//
// lm, base, baseOff and prepared are changed under mu, and read under mu
// by another instance's PrepareAdopt, which may run on another goroutine
// than the one driving this instance; that goroutine reads them freely.
type handover struct {
	mu       sync.Mutex
	lm       *linearMemory // nil: wazero's memory, no handover
	base     *memFile
	baseOff  int64
	prepared bool
}

// prepare returns ctx with an allocator that backs the next module's
// memory with a new memfd, when one can be made.
func (h *handover) prepare(ctx context.Context, cfg *Config) context.Context {
	lm := newLinearMemory(uint64(cfg.MemoryLimitPages) * 65536)
	if lm == nil {
		return ctx
	}
	h.lm = lm
	return experimental.WithMemoryAllocator(ctx, lm)
}

// bind records, once the module is instantiated, whether its memory is
// the memfd and where the state pages are; it releases the memfd when
// wazero did not use it. A state small enough to be copied at a handover
// has its pages faulted in now, so that the copy in the pause does not
// take page faults.
func (h *handover) bind(statePtr, stateLen uint32) {
	if h.lm == nil {
		return
	}
	if !h.lm.used {
		h.release(0, 0)
		return
	}
	h.mu.Lock()
	h.base, h.baseOff = h.lm.own, int64(statePtr)
	h.mu.Unlock()
	if stateLen > 0 && stateLen < adoptCopyBelow {
		end := (int(statePtr) + int(stateLen) + pageSize - 1) / pageSize * pageSize
		_ = unix.Madvise(h.lm.mem[statePtr:end], unix.MADV_POPULATE_WRITE)
	}
}

// release unmaps the memory and lets go of the files. When other
// instances still map this instance's state pages, the rest of its memfd
// is punched out so that only the state stays. Idempotent.
func (h *handover) release(statePtr, stateLen uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	lm := h.lm
	if lm == nil {
		return
	}
	h.lm = nil
	_ = unix.MunmapPtr(lm.addr, uintptr(len(lm.mem)))
	if h.base != nil && h.base != lm.own {
		h.base.unref()
	}
	h.base, h.prepared = nil, false
	own := lm.own
	if own.refs.Load() > 1 {
		keepFrom := int64(statePtr)
		keepTo := keepFrom + int64(statePages(stateLen))
		punch(own.fd, 0, keepFrom)
		punch(own.fd, keepTo, int64(len(lm.mem))-keepTo)
	}
	own.unref()
}

// punch frees the file's pages in [off, off+n).
func punch(fd int, off, n int64) {
	if n > 0 {
		_ = unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	}
}

// pageSize is the system page size, the unit of state handover.
var pageSize = unix.Getpagesize()

// statePages is the part of a state of n bytes made of whole pages.
func statePages(n uint32) int { return int(n) / pageSize * pageSize }
