//go:build linux && !android && (amd64 || arm64)

package cuda

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/ebitengine/purego"
)

// openLibrary opens the driver library at path and binds every function
// of api. It does not call into the library. A failure to open wraps
// ErrNoDriver with the dynamic loader's message; a missing symbol wraps
// ErrNoDriver naming it, and the library is closed again. Both end with
// advice on HOTKERNEL_LIBCUDA; fromEnv tells that path came from it.
func openLibrary(path string, fromEnv bool) (*api, error) {
	// dlerror's message is per thread: keep the goroutine on the thread
	// that called dlopen until purego has read it.
	runtime.LockOSThread()
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("%w: cannot load %s: %v %s", ErrNoDriver, path, err, loadHint(fromEnv, "its path"))
	}
	a, err := bindAPI(func(name string) (uintptr, error) {
		addr, err := purego.Dlsym(h, name)
		if err != nil {
			return 0, fmt.Errorf("%w: %s lacks the driver function %s: it is not a CUDA driver library, or one too old %s",
				ErrNoDriver, path, name, loadHint(fromEnv, "the driver library's path"))
		}
		return addr, nil
	})
	if err != nil {
		_ = purego.Dlclose(h)
		return nil, err
	}
	return a, nil
}

// bindAPI looks every driver function up with lookup, cuInit first, and
// returns the api calling them. It stops at the first lookup error and
// returns it. A panic while binding (purego rejecting a function type)
// is returned as an error wrapping ErrNoDriver rather than propagated.
func bindAPI(lookup func(name string) (uintptr, error)) (a *api, err error) {
	defer func() {
		if r := recover(); r != nil {
			a, err = nil, fmt.Errorf("%w: binding the driver functions: %v", ErrNoDriver, r)
		}
	}()
	a = new(api)
	b := binder{lookup: lookup}
	// Setup and teardown calls: purego's reflection-based binding.
	b.fn(&a.cuInit, "cuInit")
	b.fn(&a.cuDriverGetVersion, "cuDriverGetVersion")
	b.fn(&a.cuGetErrorName, "cuGetErrorName")
	b.fn(&a.cuGetErrorString, "cuGetErrorString")
	b.fn(&a.cuDeviceGetCount, "cuDeviceGetCount")
	b.fn(&a.cuDeviceGet, "cuDeviceGet")
	b.fn(&a.cuDeviceGetName, "cuDeviceGetName")
	b.fn(&a.cuDeviceGetAttribute, "cuDeviceGetAttribute")
	b.fn(&a.cuDeviceTotalMem, "cuDeviceTotalMem_v2")
	b.fn(&a.cuCtxCreate, "cuCtxCreate_v2")
	b.fn(&a.cuCtxDestroy, "cuCtxDestroy_v2")
	b.fn(&a.cuCtxPopCurrent, "cuCtxPopCurrent_v2")
	b.fn(&a.cuCtxSynchronize, "cuCtxSynchronize")
	b.fn(&a.cuModuleLoadDataEx, "cuModuleLoadDataEx")
	b.fn(&a.cuModuleUnload, "cuModuleUnload")
	b.fn(&a.cuModuleGetFunction, "cuModuleGetFunction")
	b.fn(&a.cuModuleGetGlobal, "cuModuleGetGlobal_v2")
	b.fn(&a.cuMemAlloc, "cuMemAlloc_v2")
	b.fn(&a.cuMemFree, "cuMemFree_v2")
	b.fn(&a.cuMemAllocHost, "cuMemAllocHost_v2")
	b.fn(&a.cuMemFreeHost, "cuMemFreeHost")
	b.fn(&a.cuMemcpyHtoD, "cuMemcpyHtoD_v2")
	b.fn(&a.cuMemcpyDtoH, "cuMemcpyDtoH_v2")
	b.fn(&a.cuStreamCreate, "cuStreamCreate")
	b.fn(&a.cuStreamSynchronize, "cuStreamSynchronize")
	b.fn(&a.cuStreamDestroy, "cuStreamDestroy_v2")
	b.fn(&a.cuEventCreate, "cuEventCreate")
	b.fn(&a.cuEventSynchronize, "cuEventSynchronize")
	b.fn(&a.cuEventDestroy, "cuEventDestroy_v2")
	// Page-locking of the caller's memory is an optional feature: a
	// library without it still loads, and Context.HostRegister says so.
	b.optional(&a.cuMemHostRegister, "cuMemHostRegister_v2")
	b.optional(&a.cuMemHostUnregister, "cuMemHostUnregister")

	// Calls made around every launch: purego.SyscallN directly, which
	// skips reflection. Pointers are converted to uintptr inside the call
	// expression; SyscallN is marked go:uintptrescapes, so their targets
	// stay alive and in place for the duration of the call. Results are
	// the low 32 bits of the return register (CUresult is a C enum).
	if f := b.sym("cuCtxSetCurrent"); f != 0 {
		a.cuCtxSetCurrent = func(ctx uintptr) Result {
			r, _, _ := purego.SyscallN(f, ctx)
			return result(r)
		}
	}
	if f := b.sym("cuMemcpyHtoDAsync_v2"); f != 0 {
		a.cuMemcpyHtoDAsync = func(dst uint64, src unsafe.Pointer, n uint64, stream uintptr) Result {
			r, _, _ := purego.SyscallN(f, uintptr(dst), uintptr(src), uintptr(n), stream)
			return result(r)
		}
	}
	if f := b.sym("cuMemcpyDtoHAsync_v2"); f != 0 {
		a.cuMemcpyDtoHAsync = func(dst unsafe.Pointer, src uint64, n uint64, stream uintptr) Result {
			r, _, _ := purego.SyscallN(f, uintptr(dst), uintptr(src), uintptr(n), stream)
			return result(r)
		}
	}
	if f := b.sym("cuMemcpyDtoDAsync_v2"); f != 0 {
		a.cuMemcpyDtoDAsync = func(dst, src uint64, n uint64, stream uintptr) Result {
			r, _, _ := purego.SyscallN(f, uintptr(dst), uintptr(src), uintptr(n), stream)
			return result(r)
		}
	}
	if f := b.sym("cuMemsetD8Async"); f != 0 {
		a.cuMemsetD8Async = func(dst uint64, v uint8, n uint64, stream uintptr) Result {
			r, _, _ := purego.SyscallN(f, uintptr(dst), uintptr(v), uintptr(n), stream)
			return result(r)
		}
	}
	if f := b.sym("cuMemsetD32Async"); f != 0 {
		a.cuMemsetD32Async = func(dst uint64, v uint32, n uint64, stream uintptr) Result {
			r, _, _ := purego.SyscallN(f, uintptr(dst), uintptr(v), uintptr(n), stream)
			return result(r)
		}
	}
	if f := b.sym("cuLaunchKernel"); f != 0 {
		a.cuLaunchKernel = func(fn uintptr, gx, gy, gz, bx, by, bz, sharedMem uint32, stream uintptr, params *unsafe.Pointer, extra *unsafe.Pointer) Result {
			r, _, _ := purego.SyscallN(f, fn,
				uintptr(gx), uintptr(gy), uintptr(gz),
				uintptr(bx), uintptr(by), uintptr(bz),
				uintptr(sharedMem), stream,
				uintptr(unsafe.Pointer(params)), uintptr(unsafe.Pointer(extra)))
			return result(r)
		}
	}
	if f := b.sym("cuStreamQuery"); f != 0 {
		a.cuStreamQuery = func(stream uintptr) Result {
			r, _, _ := purego.SyscallN(f, stream)
			return result(r)
		}
	}
	if f := b.sym("cuEventRecord"); f != 0 {
		a.cuEventRecord = func(event, stream uintptr) Result {
			r, _, _ := purego.SyscallN(f, event, stream)
			return result(r)
		}
	}
	if f := b.sym("cuEventQuery"); f != 0 {
		a.cuEventQuery = func(event uintptr) Result {
			r, _, _ := purego.SyscallN(f, event)
			return result(r)
		}
	}
	if b.err != nil {
		return nil, b.err
	}
	return a, nil
}

// result converts a C return register holding a CUresult.
func result(r uintptr) Result {
	return Result(int32(uint32(r)))
}

// binder looks symbols up until the first failure, which it keeps.
type binder struct {
	lookup func(name string) (uintptr, error)
	err    error
}

// sym returns the address of name, or 0 once a lookup has failed.
func (b *binder) sym(name string) uintptr {
	if b.err != nil {
		return 0
	}
	addr, err := b.lookup(name)
	if err == nil && addr == 0 {
		err = fmt.Errorf("%w: symbol %s has address 0", ErrNoDriver, name)
	}
	if err != nil {
		b.err = err
		return 0
	}
	return addr
}

// optional binds fptr like fn when the symbol exists and leaves it nil
// when the lookup fails, without recording the failure.
func (b *binder) optional(fptr any, name string) {
	if b.err != nil {
		return
	}
	if addr, err := b.lookup(name); err == nil && addr != 0 {
		purego.RegisterFunc(fptr, addr)
	}
}

// fn binds the Go function pointed to by fptr to the symbol name with
// purego.RegisterFunc.
func (b *binder) fn(fptr any, name string) {
	if addr := b.sym(name); addr != 0 {
		purego.RegisterFunc(fptr, addr)
	}
}
