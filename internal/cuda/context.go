package cuda

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// DevicePtr is an address in device memory (CUdeviceptr). 0 is never a
// valid allocation.
type DevicePtr uint64

// Dim3 is a grid or block size in threads or blocks per dimension. Every
// dimension of a launch must be at least 1.
type Dim3 struct{ X, Y, Z uint32 }

// Context is a CUDA context on one device: device memory, modules,
// streams and events belong to it and go away with it.
//
// Every method is safe for concurrent use. A method locks the calling
// goroutine to its OS thread, makes the context current on that thread
// with cuCtxSetCurrent, makes its driver calls, makes no context current
// again (cuCtxSetCurrent(NULL)) and unlocks the thread; so no thread is
// left with a context current by this package between calls.
//
// Destroy waits for the calls in progress in the context (on any of its
// objects) to return, as the driver requires that no call uses a context
// being destroyed; calls made after it return an error wrapping
// ErrDestroyed, except the idempotent releases (Destroy, and Unload and
// Destroy of the context's modules, streams and events), which return
// nil. So a blocking wait (Synchronize of the context, a stream or an
// event) on a kernel that never ends also holds up Destroy, and the calls
// made while Destroy waits; a host that must be able to give up on a
// kernel polls with Stream.Query or Event.Query instead. A Context not obtained from NewContext (a zero Context or a nil
// *Context) answers every method with an error wrapping
// ErrInvalidArgument, and Device with nil.
type Context struct {
	drv *Driver
	dev *Device

	mu     sync.RWMutex // held for reading by every call, for writing by Destroy
	handle uintptr      // CUcontext
	dead   bool

	hostMu sync.Mutex
	host   map[uintptr]int // page-locked allocations: address → length
}

// NewContext creates a context on dev (cuCtxCreate_v2 with
// CU_CTX_SCHED_AUTO) and returns it. The thread that creates it is left
// as it was, with no context current: the new context is popped
// (cuCtxPopCurrent_v2) with the goroutine locked to the thread
// throughout. dev must come from
// d.Device; a nil or foreign Device gives an error wrapping
// ErrInvalidArgument.
func (d *Driver) NewContext(dev *Device) (*Context, error) {
	const op = "cuCtxCreate_v2"
	if err := d.usable(op); err != nil {
		return nil, err
	}
	if dev == nil || dev.drv != d {
		return nil, invalid(op, "the device was not obtained from this Driver's Device method")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var h uintptr
	if err := d.check(op, d.api.cuCtxCreate(&h, ctxSchedAuto, dev.handle)); err != nil {
		return nil, err
	}
	var popped uintptr
	if err := d.check("cuCtxPopCurrent_v2", d.api.cuCtxPopCurrent(&popped)); err != nil {
		d.api.cuCtxDestroy(h)
		return nil, err
	}
	return &Context{drv: d, dev: dev, handle: h, host: make(map[uintptr]int)}, nil
}

// Device returns the device the context was created on.
func (c *Context) Device() *Device {
	if c == nil {
		return nil
	}
	return c.dev
}

// usable returns nil for a Context from NewContext and an error wrapping
// ErrInvalidArgument otherwise.
func (c *Context) usable(op string) error {
	if c == nil || c.drv == nil || c.drv.api == nil {
		return invalid(op, "the Context was not obtained from NewContext")
	}
	return nil
}

// enter begins a call named op in the context: it takes the read lock,
// fails with ErrDestroyed after Destroy, locks the OS thread and makes
// the context current. On success the caller must call leave.
func (c *Context) enter(op string) error {
	if err := c.usable(op); err != nil {
		return err
	}
	c.mu.RLock()
	if c.dead {
		c.mu.RUnlock()
		return destroyed(op, "context")
	}
	runtime.LockOSThread()
	if r := c.drv.api.cuCtxSetCurrent(c.handle); r != Success {
		runtime.UnlockOSThread()
		c.mu.RUnlock()
		return c.drv.newError("cuCtxSetCurrent", r)
	}
	return nil
}

// leave ends a call begun by enter.
func (c *Context) leave() {
	c.drv.api.cuCtxSetCurrent(0)
	runtime.UnlockOSThread()
	c.mu.RUnlock()
}

// alive returns nil while the context is usable, without a driver call.
func (c *Context) alive(op string) error {
	if err := c.usable(op); err != nil {
		return err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.dead {
		return destroyed(op, "context")
	}
	return nil
}

// Destroy destroys the context (cuCtxDestroy_v2), releasing everything
// in it: device memory, page-locked host memory from AllocHost (whose
// slices must not be used afterwards), registrations of HostRegister,
// modules, streams and events. It waits for calls in progress in the
// context to return first; it does not stop kernels that are running. It is
// idempotent: calls after the first return nil. The context counts as
// destroyed even when the driver reports an error, which is returned.
func (c *Context) Destroy() error {
	const op = "cuCtxDestroy_v2"
	if err := c.usable(op); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return nil
	}
	c.dead = true
	c.hostMu.Lock()
	c.host = nil
	c.hostMu.Unlock()
	return c.drv.check(op, c.drv.api.cuCtxDestroy(c.handle))
}

// Synchronize waits until all work in the context is done
// (cuCtxSynchronize) and returns the first error of that work, such as a
// sticky error of a kernel (see IsSticky).
func (c *Context) Synchronize() error {
	const op = "cuCtxSynchronize"
	if err := c.enter(op); err != nil {
		return err
	}
	defer c.leave()
	return c.drv.check(op, c.drv.api.cuCtxSynchronize())
}

// Alloc allocates n bytes of device memory (cuMemAlloc_v2). The memory is
// not initialised; it is released by Free or by Destroy. n == 0 gives an
// error wrapping ErrInvalidArgument.
func (c *Context) Alloc(n uint64) (DevicePtr, error) {
	const op = "cuMemAlloc_v2"
	if n == 0 {
		return 0, invalid(op, "0 bytes requested")
	}
	if err := c.enter(op); err != nil {
		return 0, err
	}
	defer c.leave()
	var p uint64
	if err := c.drv.check(op, c.drv.api.cuMemAlloc(&p, n)); err != nil {
		return 0, err
	}
	return DevicePtr(p), nil
}

// Free releases device memory from Alloc (cuMemFree_v2). A pointer that
// is not the start of a live allocation gives the driver's error
// (normally CUDA_ERROR_INVALID_VALUE).
func (c *Context) Free(p DevicePtr) error {
	const op = "cuMemFree_v2"
	if err := c.enter(op); err != nil {
		return err
	}
	defer c.leave()
	return c.drv.check(op, c.drv.api.cuMemFree(uint64(p)))
}

// AllocHost allocates n bytes of page-locked host memory
// (cuMemAllocHost_v2) and returns it as a slice of length and capacity n.
// The memory is outside the Go heap; the slice is valid until FreeHost or
// Destroy, and using it afterwards is a use-after-free the Go runtime
// does not catch. Copies on a Stream from and to this memory are truly
// asynchronous. n <= 0 gives an error wrapping ErrInvalidArgument.
func (c *Context) AllocHost(n int) ([]byte, error) {
	const op = "cuMemAllocHost_v2"
	if n <= 0 {
		return nil, invalid(op, "%d bytes requested", n)
	}
	if err := c.enter(op); err != nil {
		return nil, err
	}
	defer c.leave()
	var p unsafe.Pointer
	if err := c.drv.check(op, c.drv.api.cuMemAllocHost(&p, uint64(n))); err != nil {
		return nil, err
	}
	c.hostMu.Lock()
	c.host[uintptr(p)] = n
	c.hostMu.Unlock()
	return unsafe.Slice((*byte)(p), n), nil
}

// FreeHost releases page-locked memory from AllocHost (cuMemFreeHost).
// b must be the slice AllocHost returned, or a reslice of it starting at
// its first byte; anything else, including a second FreeHost of the same
// memory, gives an error wrapping ErrInvalidArgument and frees nothing.
func (c *Context) FreeHost(b []byte) error {
	const op = "cuMemFreeHost"
	if cap(b) == 0 {
		return invalid(op, "empty slice")
	}
	if err := c.enter(op); err != nil {
		return err
	}
	defer c.leave()
	p := unsafe.Pointer(unsafe.SliceData(b))
	c.hostMu.Lock()
	_, ok := c.host[uintptr(p)]
	if ok {
		delete(c.host, uintptr(p))
	}
	c.hostMu.Unlock()
	if !ok {
		return invalid(op, "the slice does not start a live allocation of this context's AllocHost")
	}
	return c.drv.check(op, c.drv.api.cuMemFreeHost(p))
}

// CopyHtoD copies src to device memory at dst and returns when the copy
// is done (cuMemcpyHtoD_v2). An empty src does nothing (but still fails
// after Destroy).
func (c *Context) CopyHtoD(dst DevicePtr, src []byte) error {
	const op = "cuMemcpyHtoD_v2"
	if len(src) == 0 {
		return c.alive(op)
	}
	if err := c.enter(op); err != nil {
		return err
	}
	defer c.leave()
	return c.drv.check(op, c.drv.api.cuMemcpyHtoD(uint64(dst), unsafe.Pointer(&src[0]), uint64(len(src))))
}

// CopyDtoH copies len(dst) bytes from device memory at src into dst and
// returns when the copy is done (cuMemcpyDtoH_v2). An empty dst does
// nothing (but still fails after Destroy).
func (c *Context) CopyDtoH(dst []byte, src DevicePtr) error {
	const op = "cuMemcpyDtoH_v2"
	if len(dst) == 0 {
		return c.alive(op)
	}
	if err := c.enter(op); err != nil {
		return err
	}
	defer c.leave()
	return c.drv.check(op, c.drv.api.cuMemcpyDtoH(unsafe.Pointer(&dst[0]), uint64(src), uint64(len(dst))))
}

// HostRegister page-locks the memory of b for the context
// (cuMemHostRegister_v2, no flags), so that Stream copies from and to it
// are asynchronous as with AllocHost memory. b should be memory outside
// the Go heap (from mmap, for example); Go memory must at least be kept
// alive until HostUnregister. b stays registered until HostUnregister or
// Destroy. An empty b gives an error wrapping ErrInvalidArgument, a
// driver library without the function one wrapping ErrNoDriver, and
// memory already registered the driver's
// CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED.
func (c *Context) HostRegister(b []byte) error {
	const op = "cuMemHostRegister_v2"
	if len(b) == 0 {
		return invalid(op, "empty slice")
	}
	if err := c.enter(op); err != nil {
		return err
	}
	defer c.leave()
	if c.drv.api.cuMemHostRegister == nil {
		return fmt.Errorf("%s: %w: %s lacks the function", op, ErrNoDriver, c.drv.path)
	}
	return c.drv.check(op, c.drv.api.cuMemHostRegister(unsafe.Pointer(&b[0]), uint64(len(b)), 0))
}

// HostUnregister undoes HostRegister for the memory starting at b's first
// byte (cuMemHostUnregister). Memory that is not registered gives the
// driver's CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED; an empty b, or a driver
// library without the function, errors as for HostRegister.
func (c *Context) HostUnregister(b []byte) error {
	const op = "cuMemHostUnregister"
	if len(b) == 0 {
		return invalid(op, "empty slice")
	}
	if err := c.enter(op); err != nil {
		return err
	}
	defer c.leave()
	if c.drv.api.cuMemHostUnregister == nil {
		return fmt.Errorf("%s: %w: %s lacks the function", op, ErrNoDriver, c.drv.path)
	}
	return c.drv.check(op, c.drv.api.cuMemHostUnregister(unsafe.Pointer(&b[0])))
}
