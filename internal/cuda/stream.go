package cuda

import (
	"runtime"
	"sync"
	"unsafe"
)

// Stream is a queue of asynchronous work in a context: copies, memsets
// and kernel launches run in the order they were issued. Streams are
// created non-blocking (CU_STREAM_NON_BLOCKING): they do not synchronise
// with the context's default stream. Methods are safe for concurrent
// use and follow the Context's threading model; work issued concurrently
// from several goroutines runs in the order the driver received it. A
// Stream not obtained from NewStream answers every method with an error
// wrapping ErrInvalidArgument.
//
// The asynchronous methods return once the work is queued. Errors of the
// work itself (such as a kernel's illegal address) are reported by a
// later call: Synchronize, Query, or any call in the context once sticky.
type Stream struct {
	obj object
}

func (s *Stream) object() *object {
	if s == nil {
		return nil
	}
	return &s.obj
}

// NewStream creates a stream (cuStreamCreate with CU_STREAM_NON_BLOCKING).
// It is released by Stream.Destroy or with the context.
func (c *Context) NewStream() (*Stream, error) {
	const op = "cuStreamCreate"
	if err := c.enter(op); err != nil {
		return nil, err
	}
	defer c.leave()
	var h uintptr
	if err := c.drv.check(op, c.drv.api.cuStreamCreate(&h, streamNonBlocking)); err != nil {
		return nil, err
	}
	return &Stream{obj: object{ctx: c, kind: "stream", handle: h}}, nil
}

// CopyHtoD queues a copy of src to device memory at dst
// (cuMemcpyHtoDAsync_v2). An empty src queues nothing.
//
// src should be page-locked memory from Context.AllocHost: only then is
// the copy asynchronous, and src must stay unchanged until the stream has
// passed the copy (Synchronize, or an Event recorded after it). Other Go
// memory is staged by the driver before CopyHtoD returns, but the same
// rule is the safe one to follow for it.
func (s *Stream) CopyHtoD(dst DevicePtr, src []byte) error {
	const op = "cuMemcpyHtoDAsync_v2"
	o := s.object()
	if err := o.enter(op, "stream"); err != nil {
		return err
	}
	defer o.leave()
	if len(src) == 0 {
		return nil
	}
	r := o.ctx.drv.api.cuMemcpyHtoDAsync(uint64(dst), unsafe.Pointer(&src[0]), uint64(len(src)), o.handle)
	return o.ctx.drv.check(op, r)
}

// CopyDtoH queues a copy of len(dst) bytes from device memory at src into
// dst (cuMemcpyDtoHAsync_v2). An empty dst queues nothing.
//
// dst should be page-locked memory from Context.AllocHost; its contents
// are defined only once the stream has passed the copy (Synchronize, or
// an Event recorded after it), and it must not be used until then. The
// driver completes copies into other Go memory before CopyDtoH returns,
// but the same rule is the safe one to follow for it.
func (s *Stream) CopyDtoH(dst []byte, src DevicePtr) error {
	const op = "cuMemcpyDtoHAsync_v2"
	o := s.object()
	if err := o.enter(op, "stream"); err != nil {
		return err
	}
	defer o.leave()
	if len(dst) == 0 {
		return nil
	}
	r := o.ctx.drv.api.cuMemcpyDtoHAsync(unsafe.Pointer(&dst[0]), uint64(src), uint64(len(dst)), o.handle)
	return o.ctx.drv.check(op, r)
}

// CopyDtoD queues a copy of n bytes of device memory from src to dst
// (cuMemcpyDtoDAsync_v2). n == 0 queues nothing.
func (s *Stream) CopyDtoD(dst, src DevicePtr, n uint64) error {
	const op = "cuMemcpyDtoDAsync_v2"
	o := s.object()
	if err := o.enter(op, "stream"); err != nil {
		return err
	}
	defer o.leave()
	if n == 0 {
		return nil
	}
	return o.ctx.drv.check(op, o.ctx.drv.api.cuMemcpyDtoDAsync(uint64(dst), uint64(src), n, o.handle))
}

// MemsetD8 queues setting n bytes of device memory at p to v
// (cuMemsetD8Async).
func (s *Stream) MemsetD8(p DevicePtr, v byte, n uint64) error {
	const op = "cuMemsetD8Async"
	o := s.object()
	if err := o.enter(op, "stream"); err != nil {
		return err
	}
	defer o.leave()
	return o.ctx.drv.check(op, o.ctx.drv.api.cuMemsetD8Async(uint64(p), v, n, o.handle))
}

// MemsetD32 queues setting n 32-bit words of device memory at p to v
// (cuMemsetD32Async); p must be 4-byte aligned.
func (s *Stream) MemsetD32(p DevicePtr, v uint32, n uint64) error {
	const op = "cuMemsetD32Async"
	o := s.object()
	if err := o.enter(op, "stream"); err != nil {
		return err
	}
	defer o.leave()
	return o.ctx.drv.check(op, o.ctx.drv.api.cuMemsetD32Async(uint64(p), v, n, o.handle))
}

// MaxLaunchParams is the most kernel parameters Stream.Launch passes.
const MaxLaunchParams = 16

// launchParams holds the kernel parameters of one launch: slots[i] is
// parameter i, ptrs[i] points at slots[i]. ptrs is filled once, when the
// value is made; values are reused through launchPool, so that a launch
// does not allocate them.
type launchParams struct {
	slots [MaxLaunchParams]uint64
	ptrs  [MaxLaunchParams]unsafe.Pointer
}

var launchPool = sync.Pool{New: func() any {
	p := new(launchParams)
	for i := range p.slots {
		p.ptrs[i] = unsafe.Pointer(&p.slots[i])
	}
	return p
}}

// Launch queues the kernel f on the stream (cuLaunchKernel) with a grid
// of grid blocks of block threads each and sharedMem bytes of dynamic
// shared memory per block.
//
// Each of params is one kernel parameter, in order, in a 64-bit slot
// passed by address: an 8-byte parameter (.u64, .s64, .f64, a pointer)
// reads the whole slot, a 4-byte one (.u32, .s32, .f32) its low 4 bytes,
// as the platforms are little-endian. Pass pointers as
// uint64(DevicePtr), 32-bit integers as uint64(v), and a float32 as
// uint64(math.Float32bits(x)). Parameters larger than 8 bytes are not
// supported. The driver copies the parameters during the call, so
// params may be reused as soon as Launch returns.
//
// More than MaxLaunchParams parameters, a nil f, or an f from another
// context give an error wrapping ErrInvalidArgument; an f whose module
// was unloaded gives an error wrapping ErrDestroyed. Launch
// configuration errors (zero or too large dimensions, too much shared
// memory, parameters not matching the kernel's) come from the driver as
// an *Error, some only from the next synchronisation.
func (s *Stream) Launch(f *Function, grid, block Dim3, sharedMem uint32, params ...uint64) error {
	const op = "cuLaunchKernel"
	if f == nil || f.mod == nil {
		return invalid(op, "nil or foreign Function")
	}
	if len(params) > MaxLaunchParams {
		return invalid(op, "%d kernel parameters, at most %d are supported", len(params), MaxLaunchParams)
	}
	o := s.object()
	if err := o.enter(op, "stream"); err != nil {
		return err
	}
	defer o.leave()
	m := &f.mod.obj
	if m.ctx != o.ctx {
		return invalid(op, "function %s belongs to another context", f.Name)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.dead {
		return destroyed(op, "module of function "+f.Name)
	}
	var kernelParams *unsafe.Pointer
	var lp *launchParams
	if len(params) > 0 {
		lp = launchPool.Get().(*launchParams)
		copy(lp.slots[:], params)
		kernelParams = &lp.ptrs[0]
	}
	r := o.ctx.drv.api.cuLaunchKernel(f.handle, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedMem, o.handle, kernelParams, nil)
	if lp != nil {
		runtime.KeepAlive(lp)
		launchPool.Put(lp)
	}
	return o.ctx.drv.check(op, r)
}

// Synchronize waits until all work queued on the stream is done
// (cuStreamSynchronize) and returns the first error of that work.
func (s *Stream) Synchronize() error {
	const op = "cuStreamSynchronize"
	o := s.object()
	if err := o.enter(op, "stream"); err != nil {
		return err
	}
	defer o.leave()
	return o.ctx.drv.check(op, o.ctx.drv.api.cuStreamSynchronize(o.handle))
}

// Query reports whether all work queued on the stream is done
// (cuStreamQuery) without waiting: true for done, false (with a nil
// error) for CUDA_ERROR_NOT_READY, and the error of the work otherwise.
func (s *Stream) Query() (bool, error) {
	const op = "cuStreamQuery"
	o := s.object()
	if err := o.enter(op, "stream"); err != nil {
		return false, err
	}
	defer o.leave()
	return ready(o.ctx.drv, op, o.ctx.drv.api.cuStreamQuery(o.handle))
}

// ready maps the result of a query to done, not ready or an error.
func ready(d *Driver, op string, r Result) (bool, error) {
	switch r {
	case Success:
		return true, nil
	case ErrNotReady:
		return false, nil
	}
	return false, d.newError(op, r)
}

// Destroy destroys the stream (cuStreamDestroy_v2), waiting for calls in
// progress on it; work already queued still runs to completion. It is
// idempotent and returns nil once the stream is gone, including after its
// context was destroyed.
func (s *Stream) Destroy() error {
	o := s.object()
	return o.release("cuStreamDestroy_v2", "stream", func(h uintptr) Result {
		return o.ctx.drv.api.cuStreamDestroy(h)
	})
}

// Event marks a point in a stream's work, to wait for or poll. Events are
// created without timing (CU_EVENT_DISABLE_TIMING), which makes them
// cheapest to record and wait for. Methods are safe for concurrent use
// and follow the Context's threading model. An Event not obtained from
// NewEvent answers every method with an error wrapping
// ErrInvalidArgument.
type Event struct {
	obj object
}

func (e *Event) object() *object {
	if e == nil {
		return nil
	}
	return &e.obj
}

// NewEvent creates an event (cuEventCreate with CU_EVENT_DISABLE_TIMING).
// It is released by Event.Destroy or with the context.
func (c *Context) NewEvent() (*Event, error) {
	const op = "cuEventCreate"
	if err := c.enter(op); err != nil {
		return nil, err
	}
	defer c.leave()
	var h uintptr
	if err := c.drv.check(op, c.drv.api.cuEventCreate(&h, eventDisableTiming)); err != nil {
		return nil, err
	}
	return &Event{obj: object{ctx: c, kind: "event", handle: h}}, nil
}

// Record records the event at the current end of s's queued work
// (cuEventRecord): the event completes when that work is done.
// Re-recording moves the event. s must be a live stream of the event's
// context; nil or a stream of another context gives an error wrapping
// ErrInvalidArgument, a destroyed one an error wrapping ErrDestroyed.
func (e *Event) Record(s *Stream) error {
	const op = "cuEventRecord"
	if s == nil || s.obj.ctx == nil {
		return invalid(op, "nil or foreign Stream")
	}
	o := e.object()
	if err := o.enter(op, "event"); err != nil {
		return err
	}
	defer o.leave()
	if s.obj.ctx != o.ctx {
		return invalid(op, "the stream belongs to another context")
	}
	s.obj.mu.RLock()
	defer s.obj.mu.RUnlock()
	if s.obj.dead {
		return destroyed(op, "stream")
	}
	return o.ctx.drv.check(op, o.ctx.drv.api.cuEventRecord(o.handle, s.obj.handle))
}

// Synchronize waits until the event has completed (cuEventSynchronize).
// An event never recorded counts as completed.
func (e *Event) Synchronize() error {
	const op = "cuEventSynchronize"
	o := e.object()
	if err := o.enter(op, "event"); err != nil {
		return err
	}
	defer o.leave()
	return o.ctx.drv.check(op, o.ctx.drv.api.cuEventSynchronize(o.handle))
}

// Query reports whether the event has completed (cuEventQuery) without
// waiting: true for completed (or never recorded), false (with a nil
// error) for CUDA_ERROR_NOT_READY, and an error otherwise.
func (e *Event) Query() (bool, error) {
	const op = "cuEventQuery"
	o := e.object()
	if err := o.enter(op, "event"); err != nil {
		return false, err
	}
	defer o.leave()
	return ready(o.ctx.drv, op, o.ctx.drv.api.cuEventQuery(o.handle))
}

// Destroy destroys the event (cuEventDestroy_v2), waiting for calls in
// progress on it. It is idempotent and returns nil once the event is
// gone, including after its context was destroyed.
func (e *Event) Destroy() error {
	o := e.object()
	return o.release("cuEventDestroy_v2", "event", func(h uintptr) Result {
		return o.ctx.drv.api.cuEventDestroy(h)
	})
}
