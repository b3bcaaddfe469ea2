// Package cudafake builds and drives libcuda-fake.so, a test double of the
// CUDA driver library (libcuda), so that CI can exercise the host side of
// the CUDA backend without a GPU: packing batches, reading statuses and
// outputs, state handling, JIT logs, and recovery from sticky errors.
//
// It proves nothing about real GPUs. The kernels it runs are the example
// kernels of examples/kernels/cuda compiled as host C, not their PTX; they
// run on the calling thread, one block and thread after the other, so
// races, memory ordering, timing, real JIT errors and driver quirks are not
// tested. Code that passes here still has to be run on a GPU.
//
// The library exports, with their real signatures and CUresult codes,
// every driver function that internal/cuda binds. What it does:
//
//   - One device, "hotkernel fake GPU", compute capability 9.0 with 132
//     multiprocessors (every other attribute reads 0), 80 GiB, driver
//     version 12040. HOTKERNEL_FAKE_NO_DEVICE=1 in the environment when
//     cuInit is called makes it return CUDA_ERROR_NO_DEVICE (100).
//   - Contexts: cuCtxCreate_v2 pushes the new context on the calling OS
//     thread's stack; cuCtxSetCurrent, cuCtxPopCurrent_v2 work on that
//     stack. A call that needs a context and has none current returns
//     CUDA_ERROR_INVALID_CONTEXT (201); one whose current context was
//     destroyed (on another thread) returns CUDA_ERROR_CONTEXT_IS_DESTROYED
//     (709). cuCtxDestroy_v2 frees every allocation, module, stream and
//     event of the context. Handles of another context, or stale ones,
//     are CUDA_ERROR_INVALID_HANDLE (400).
//   - Memory: device memory is host memory (a CUdeviceptr is a host
//     address), 256-byte aligned and zeroed. Copies and memsets must stay
//     inside one allocation of the current context (device, page-locked
//     host, or a module global), or they return CUDA_ERROR_INVALID_VALUE
//     (1). cuMemHostRegister_v2 and cuMemHostUnregister (which
//     internal/cuda binds when present) record the caller's memory as
//     registered, overlapping ranges being
//     CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED (712) and unknown ones
//     CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED (713); the context forgets
//     them, without freeing them, when destroyed.
//   - Modules: PTX text only. A CUBIN or fatbinary returns
//     CUDA_ERROR_NO_BINARY_FOR_GPU (209) with an error log line saying so.
//     PTX without a .version line, or with a line containing
//     hk_fake_jit_error, returns CUDA_ERROR_INVALID_PTX (218) and an error
//     log in ptxas's format ("ptxas application ptx input, line N; error
//     : ..."). Otherwise the .entry names and the .global variables (with
//     their initial values) are read from the text and an information log
//     line is written. Log sizes written back exclude the NUL. A
//     missing function or global is CUDA_ERROR_NOT_FOUND (500).
//   - Launches: a module whose image was bound with Bind runs the bound
//     host implementation's hk_process, hk_init or hk_migrate; launching
//     any function of an unbound module, or an entry the implementation
//     lacks, returns CUDA_ERROR_NOT_SUPPORTED (801). Streams complete their
//     work when it is enqueued, so events and queries always report
//     completion.
//   - Faults: a kernel that calls HK_FAULT, or a launch whose pointer
//     arguments reach outside the context's memory (the state, off, res,
//     out and in ranges that the ABI implies), poisons its context as an
//     illegal address does on a GPU: cuLaunchKernel succeeds, and every
//     later call made with that context current returns
//     CUDA_ERROR_ILLEGAL_ADDRESS (700) until cuCtxDestroy_v2. Other
//     contexts are unaffected. LastFault tells what happened.
//
// The library is thread-safe (one lock around every call; kernels run
// under it). Every process that loads it shares one instance per path:
// dlopen of the same path returns the same handle, so the binding under
// test, Bind, Calls and LastFault all see the same state.
package cudafake

import (
	"errors"
	"fmt"
	cudakernels "github.com/hotkernel/hotkernel/examples/kernels/cuda"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// NoDeviceEnv is the environment variable that, set to "1" when cuInit
// is called, makes the fake report that there is no device.
const NoDeviceEnv = "HOTKERNEL_FAKE_NO_DEVICE"

// library is the fake's helper functions in one loaded library.
type library struct {
	bind      func(image unsafe.Pointer, n uintptr, impl string) int32
	calls     func(name string) int64
	impls     func(buf *byte, n uintptr)
	lastFault func(buf *byte, n uintptr)
}

var (
	libsMu sync.Mutex
	libs   = map[string]*library{}
)

// open loads the fake at path once and binds its helpers.
func open(path string) (*library, error) {
	libsMu.Lock()
	defer libsMu.Unlock()
	if l := libs[path]; l != nil {
		return l, nil
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("cudafake: cannot load %s: %v", path, err)
	}
	for _, sym := range []string{"fake_bind", "fake_calls", "fake_impls", "fake_last_fault"} {
		if _, err := purego.Dlsym(h, sym); err != nil {
			return nil, fmt.Errorf("cudafake: %s is not the fake libcuda: it lacks %s", path, sym)
		}
	}
	l := new(library)
	purego.RegisterLibFunc(&l.bind, h, "fake_bind")
	purego.RegisterLibFunc(&l.calls, h, "fake_calls")
	purego.RegisterLibFunc(&l.impls, h, "fake_impls")
	purego.RegisterLibFunc(&l.lastFault, h, "fake_last_fault")
	libs[path] = l
	return l, nil
}

// mustOpen is open for functions that have no error result.
func mustOpen(path string) *library {
	l, err := open(path)
	if err != nil {
		panic(err)
	}
	return l
}

// text calls a helper that writes a C string into a buffer.
func text(fn func(*byte, uintptr)) string {
	buf := make([]byte, 4096)
	fn(&buf[0], uintptr(len(buf)))
	for i, c := range buf {
		if c == 0 {
			return string(buf[:i])
		}
	}
	return string(buf)
}

// Bind tells the fake library at lib (a path Build returned) that a
// module image with exactly these bytes runs the host implementation
// named impl: a variant name of package cudakernels, such as "counter_v2"
// or "counter_v2_broken". Trailing NUL bytes do not count, so the PTX of
// cudakernels.PTX binds whether or not the loader appends a NUL. The
// binding applies to modules loaded afterwards, in every context; binding
// the same bytes again replaces the implementation.
//
// Images that are not bound still load (their globals and entries are read
// from the PTX text), but launching one of their functions fails with
// CUDA_ERROR_NOT_SUPPORTED (801).
//
// The error says why when impl is not an implementation the library has
// (listing those it has), when image is empty, or when lib cannot be
// loaded or is not the fake.
func Bind(lib string, image []byte, impl string) error {
	l, err := open(lib)
	if err != nil {
		return err
	}
	if len(image) == 0 {
		return errors.New("cudafake: Bind: empty image")
	}
	rc := l.bind(unsafe.Pointer(&image[0]), uintptr(len(image)), impl)
	runtime.KeepAlive(image)
	switch rc {
	case 0:
		return nil
	case -1:
		return fmt.Errorf("cudafake: Bind: %s has no host implementation %q; it has: %s", lib, impl, text(l.impls))
	case -2:
		return errors.New("cudafake: Bind: the image holds only NUL bytes")
	}
	return fmt.Errorf("cudafake: Bind: fake_bind failed with %d (out of memory)", rc)
}

// Calls returns how many times the driver function name (its symbol,
// such as "cuCtxDestroy_v2") of the fake library at lib was called since
// the library was loaded, by anyone in the process, successful and failed
// calls alike. Counts only grow: compare a count before and after the
// code under test.
//
// It panics when lib cannot be loaded or is not the fake, and when the
// fake has no function called name, so that a misspelt name does not
// read as "never called".
func Calls(lib, name string) int {
	n := mustOpen(lib).calls(name)
	if n < 0 {
		panic(fmt.Sprintf("cudafake: Calls: the fake libcuda has no function %q", name))
	}
	return int(n)
}

// LastFault returns what the latest fault in any context of the fake
// library at lib was — which launch, of which host implementation, and
// either that the kernel faulted (HK_FAULT) or which argument range lay
// outside the context's memory — or "" when there has been none. It
// panics when lib cannot be loaded or is not the fake.
func LastFault(lib string) string { return text(mustOpen(lib).lastFault) }

// BindExamples binds the PTX of every example kernel of package
// cudakernels to its host implementation of the same name.
func BindExamples(lib string) error {
	for _, name := range cudakernels.Names() {
		if err := Bind(lib, cudakernels.PTX(name), name); err != nil {
			return err
		}
	}
	return nil
}
