package cuda

import "unsafe"

// api holds the driver functions, one field per C function. The C types
// map as follows: CUresult → Result (int32), CUdevice and int → int32,
// unsigned int and enums → uint32 (CUjit_option arrays → int32),
// CUdeviceptr and size_t → uint64, handles (CUcontext, CUmodule,
// CUfunction, CUstream, CUevent) → uintptr, void* → unsafe.Pointer,
// const char* → string or *byte, const char** → **byte.
//
// Each field is named after the symbol it is bound to, less a _v2
// suffix; bindAPI (load_dlopen.go) has the exact symbol names. The fields
// are never nil in the api of a loaded Driver.
type api struct {
	cuInit               func(flags uint32) Result
	cuDriverGetVersion   func(version *int32) Result
	cuGetErrorName       func(code Result, name **byte) Result
	cuGetErrorString     func(code Result, text **byte) Result
	cuDeviceGetCount     func(count *int32) Result
	cuDeviceGet          func(dev *int32, ordinal int32) Result
	cuDeviceGetName      func(name *byte, size int32, dev int32) Result
	cuDeviceGetAttribute func(value *int32, attr int32, dev int32) Result
	cuDeviceTotalMem     func(bytes *uint64, dev int32) Result
	cuCtxCreate          func(ctx *uintptr, flags uint32, dev int32) Result
	cuCtxDestroy         func(ctx uintptr) Result
	cuCtxPopCurrent      func(ctx *uintptr) Result
	cuCtxSynchronize     func() Result
	cuModuleLoadDataEx   func(mod *uintptr, image unsafe.Pointer, n uint32, options *int32, values *uintptr) Result
	cuModuleUnload       func(mod uintptr) Result
	cuModuleGetFunction  func(fn *uintptr, mod uintptr, name string) Result
	cuModuleGetGlobal    func(ptr *uint64, size *uint64, mod uintptr, name string) Result
	cuMemAlloc           func(ptr *uint64, size uint64) Result
	cuMemFree            func(ptr uint64) Result
	cuMemAllocHost       func(p *unsafe.Pointer, size uint64) Result
	cuMemFreeHost        func(p unsafe.Pointer) Result
	cuMemcpyHtoD         func(dst uint64, src unsafe.Pointer, n uint64) Result
	cuMemcpyDtoH         func(dst unsafe.Pointer, src uint64, n uint64) Result
	cuStreamCreate       func(stream *uintptr, flags uint32) Result
	cuStreamSynchronize  func(stream uintptr) Result
	cuStreamDestroy      func(stream uintptr) Result
	cuEventCreate        func(event *uintptr, flags uint32) Result
	cuEventSynchronize   func(event uintptr) Result
	cuEventDestroy       func(event uintptr) Result

	// Optional: nil when the library lacks them (see bindAPI).
	cuMemHostRegister   func(p unsafe.Pointer, size uint64, flags uint32) Result
	cuMemHostUnregister func(p unsafe.Pointer) Result

	// The calls made around every launch are bound without purego's
	// reflection, which makes them several times cheaper and keeps them
	// from allocating more than one small argument block (see
	// load_dlopen.go).
	cuCtxSetCurrent   func(ctx uintptr) Result
	cuMemcpyHtoDAsync func(dst uint64, src unsafe.Pointer, n uint64, stream uintptr) Result
	cuMemcpyDtoHAsync func(dst unsafe.Pointer, src uint64, n uint64, stream uintptr) Result
	cuMemcpyDtoDAsync func(dst, src uint64, n uint64, stream uintptr) Result
	cuMemsetD8Async   func(dst uint64, v uint8, n uint64, stream uintptr) Result
	cuMemsetD32Async  func(dst uint64, v uint32, n uint64, stream uintptr) Result
	cuLaunchKernel    func(f uintptr, gx, gy, gz, bx, by, bz, sharedMem uint32, stream uintptr, params *unsafe.Pointer, extra *unsafe.Pointer) Result
	cuStreamQuery     func(stream uintptr) Result
	cuEventRecord     func(event, stream uintptr) Result
	cuEventQuery      func(event uintptr) Result
}

// Constants of the driver API used by this package, with cuda.h's numbers.
const (
	ctxSchedAuto        = 0  // CU_CTX_SCHED_AUTO
	streamNonBlocking   = 1  // CU_STREAM_NON_BLOCKING
	eventDisableTiming  = 2  // CU_EVENT_DISABLE_TIMING
	attrMultiprocessors = 16 // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
	attrCCMajor         = 75 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
	attrCCMinor         = 76 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR

	// CUjit_option values.
	jitWallTime           = 2  // CU_JIT_WALL_TIME: float, written back (ms)
	jitInfoLogBuffer      = 3  // CU_JIT_INFO_LOG_BUFFER: char*
	jitInfoLogBufferSize  = 4  // CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES: unsigned int, in/out
	jitErrorLogBuffer     = 5  // CU_JIT_ERROR_LOG_BUFFER: char*
	jitErrorLogBufferSize = 6  // CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES: unsigned int, in/out
	jitLogVerbose         = 12 // CU_JIT_LOG_VERBOSE: int
)

// goString copies the NUL-terminated C string at p into a Go string,
// reading at most limit bytes. A nil p gives "".
func goString(p *byte, limit int) string {
	if p == nil {
		return ""
	}
	n := 0
	for n < limit && *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
