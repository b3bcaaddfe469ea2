package cudafake

import (
	"encoding/binary"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"
)

// CUresult codes the tests expect.
const (
	cudaSuccess           = 0
	errInvalidValue       = 1
	errNotInitialized     = 3
	errNoDevice           = 100
	errInvalidDevice      = 101
	errInvalidContext     = 201
	errNoBinaryForGPU     = 209
	errInvalidPTX         = 218
	errInvalidHandle      = 400
	errNotFound           = 500
	errIllegalAddress     = 700
	errContextIsDestroyed = 709
	errAlreadyRegistered  = 712
	errNotRegistered      = 713
	errNotSupported       = 801
)

// driver is the fake's driver API, bound as internal/cuda binds it.
type driver struct {
	cuInit               func(flags uint32) int32
	cuDriverGetVersion   func(v *int32) int32
	cuGetErrorName       func(code int32, s **byte) int32
	cuGetErrorString     func(code int32, s **byte) int32
	cuDeviceGetCount     func(n *int32) int32
	cuDeviceGet          func(dev *int32, ordinal int32) int32
	cuDeviceGetName      func(name *byte, n int32, dev int32) int32
	cuDeviceGetAttribute func(v *int32, attr int32, dev int32) int32
	cuDeviceTotalMem     func(n *uint64, dev int32) int32
	cuCtxCreate          func(ctx *uintptr, flags uint32, dev int32) int32
	cuCtxDestroy         func(ctx uintptr) int32
	cuCtxSetCurrent      func(ctx uintptr) int32
	cuCtxPopCurrent      func(ctx *uintptr) int32
	cuCtxSynchronize     func() int32
	cuModuleLoadDataEx   func(mod *uintptr, image unsafe.Pointer, n uint32, options *int32, values *uintptr) int32
	cuModuleUnload       func(mod uintptr) int32
	cuModuleGetFunction  func(fn *uintptr, mod uintptr, name string) int32
	cuModuleGetGlobal    func(ptr *uint64, size *uint64, mod uintptr, name string) int32
	cuMemAlloc           func(ptr *uint64, size uint64) int32
	cuMemFree            func(ptr uint64) int32
	cuMemAllocHost       func(p *unsafe.Pointer, size uint64) int32
	cuMemFreeHost        func(p unsafe.Pointer) int32
	cuMemcpyHtoD         func(dst uint64, src unsafe.Pointer, n uint64) int32
	cuMemcpyDtoH         func(dst unsafe.Pointer, src uint64, n uint64) int32
	cuMemcpyHtoDAsync    func(dst uint64, src unsafe.Pointer, n uint64, stream uintptr) int32
	cuMemcpyDtoHAsync    func(dst unsafe.Pointer, src uint64, n uint64, stream uintptr) int32
	cuMemcpyDtoDAsync    func(dst, src uint64, n uint64, stream uintptr) int32
	cuMemsetD8Async      func(dst uint64, v uint8, n uint64, stream uintptr) int32
	cuMemsetD32Async     func(dst uint64, v uint32, n uint64, stream uintptr) int32
	cuStreamCreate       func(stream *uintptr, flags uint32) int32
	cuStreamDestroy      func(stream uintptr) int32
	cuStreamSynchronize  func(stream uintptr) int32
	cuStreamQuery        func(stream uintptr) int32
	cuEventCreate        func(event *uintptr, flags uint32) int32
	cuEventRecord        func(event, stream uintptr) int32
	cuEventSynchronize   func(event uintptr) int32
	cuEventQuery         func(event uintptr) int32
	cuEventDestroy       func(event uintptr) int32
	cuLaunchKernel       func(f uintptr, gx, gy, gz, bx, by, bz, shared uint32, stream uintptr, params *unsafe.Pointer, extra *unsafe.Pointer) int32
	cuMemHostRegister    func(p unsafe.Pointer, size uint64, flags uint32) int32
	cuMemHostUnregister  func(p unsafe.Pointer) int32
}

var (
	drvOnce sync.Once
	drv     *driver
	drvLib  string
)

// load builds the fake, binds its driver functions and calls cuInit.
func load(t *testing.T) (*driver, string) {
	t.Helper()
	lib := Build(t)
	drvOnce.Do(func() {
		h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			t.Fatal(err)
		}
		d := new(driver)
		for _, b := range []struct {
			fn   any
			name string
		}{
			{&d.cuInit, "cuInit"}, {&d.cuDriverGetVersion, "cuDriverGetVersion"},
			{&d.cuGetErrorName, "cuGetErrorName"}, {&d.cuGetErrorString, "cuGetErrorString"},
			{&d.cuDeviceGetCount, "cuDeviceGetCount"}, {&d.cuDeviceGet, "cuDeviceGet"},
			{&d.cuDeviceGetName, "cuDeviceGetName"}, {&d.cuDeviceGetAttribute, "cuDeviceGetAttribute"},
			{&d.cuDeviceTotalMem, "cuDeviceTotalMem_v2"}, {&d.cuCtxCreate, "cuCtxCreate_v2"},
			{&d.cuCtxDestroy, "cuCtxDestroy_v2"}, {&d.cuCtxSetCurrent, "cuCtxSetCurrent"},
			{&d.cuCtxPopCurrent, "cuCtxPopCurrent_v2"}, {&d.cuCtxSynchronize, "cuCtxSynchronize"},
			{&d.cuModuleLoadDataEx, "cuModuleLoadDataEx"}, {&d.cuModuleUnload, "cuModuleUnload"},
			{&d.cuModuleGetFunction, "cuModuleGetFunction"}, {&d.cuModuleGetGlobal, "cuModuleGetGlobal_v2"},
			{&d.cuMemAlloc, "cuMemAlloc_v2"}, {&d.cuMemFree, "cuMemFree_v2"},
			{&d.cuMemAllocHost, "cuMemAllocHost_v2"}, {&d.cuMemFreeHost, "cuMemFreeHost"},
			{&d.cuMemcpyHtoD, "cuMemcpyHtoD_v2"}, {&d.cuMemcpyDtoH, "cuMemcpyDtoH_v2"},
			{&d.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"}, {&d.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2"},
			{&d.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2"}, {&d.cuMemsetD8Async, "cuMemsetD8Async"},
			{&d.cuMemsetD32Async, "cuMemsetD32Async"}, {&d.cuStreamCreate, "cuStreamCreate"},
			{&d.cuStreamDestroy, "cuStreamDestroy_v2"}, {&d.cuStreamSynchronize, "cuStreamSynchronize"},
			{&d.cuStreamQuery, "cuStreamQuery"}, {&d.cuEventCreate, "cuEventCreate"},
			{&d.cuEventRecord, "cuEventRecord"}, {&d.cuEventSynchronize, "cuEventSynchronize"},
			{&d.cuEventQuery, "cuEventQuery"}, {&d.cuEventDestroy, "cuEventDestroy_v2"},
			{&d.cuLaunchKernel, "cuLaunchKernel"}, {&d.cuMemHostRegister, "cuMemHostRegister_v2"},
			{&d.cuMemHostUnregister, "cuMemHostUnregister"},
		} {
			purego.RegisterLibFunc(b.fn, h, b.name)
		}
		drv, drvLib = d, lib
	})
	if drv == nil {
		t.Fatal("binding the fake failed in an earlier test")
	}
	if r := drv.cuInit(0); r != cudaSuccess {
		t.Fatalf("cuInit = %d", r)
	}
	return drv, drvLib
}

// check fails the test when r is not want.
func check(t *testing.T, what string, r, want int32) {
	t.Helper()
	if r != want {
		t.Fatalf("%s = %d, want %d", what, r, want)
	}
}

// lockThread locks the test's goroutine to its OS thread for good: the
// thread ends with the test, so that no context stays current on a thread
// that later tests would reuse (the fake's current context is per
// thread, as the driver's is).
func lockThread() { runtime.LockOSThread() }

// newContext creates a context, current on the calling thread, destroyed
// when the test ends (unless already destroyed).
func newContext(t *testing.T, d *driver) uintptr {
	t.Helper()
	var ctx uintptr
	check(t, "cuCtxCreate_v2", d.cuCtxCreate(&ctx, 0, 0), cudaSuccess)
	t.Cleanup(func() { d.cuCtxDestroy(ctx) })
	return ctx
}

// devMem is device memory of the current context.
type devMem struct {
	d    *driver
	ptr  uint64
	size uint64
}

func alloc(t *testing.T, d *driver, size uint64) devMem {
	t.Helper()
	var p uint64
	check(t, "cuMemAlloc_v2", d.cuMemAlloc(&p, size), cudaSuccess)
	if p%256 != 0 {
		t.Fatalf("cuMemAlloc_v2 returned 0x%x, not 256-byte aligned", p)
	}
	return devMem{d, p, size}
}

func (m devMem) write(t *testing.T, b []byte) {
	t.Helper()
	if len(b) > 0 {
		check(t, "cuMemcpyHtoD_v2", m.d.cuMemcpyHtoD(m.ptr, unsafe.Pointer(&b[0]), uint64(len(b))), cudaSuccess)
	}
}

func (m devMem) read(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, m.size)
	check(t, "cuMemcpyDtoH_v2", m.d.cuMemcpyDtoH(unsafe.Pointer(&b[0]), m.ptr, m.size), cudaSuccess)
	return b
}

// module is a loaded module of the current context.
type module struct {
	d  *driver
	h  uintptr
	fn map[string]uintptr
}

// jitLog is what cuModuleLoadDataEx wrote into its logs.
type jitLog struct {
	info, error         string
	infoSize, errorSize uintptr
	wallBits            uintptr
}

// loadModule loads image as internal/cuda does, with both logs.
func loadModule(d *driver, image []byte) (uintptr, int32, jitLog) {
	infoBuf, errBuf := make([]byte, 4096), make([]byte, 4096)
	img := append(append([]byte{}, image...), 0)
	options := []int32{2, 3, 4, 5, 6, 12}
	values := []uintptr{
		0xdead, // CU_JIT_WALL_TIME: written back
		uintptr(unsafe.Pointer(&infoBuf[0])), uintptr(len(infoBuf)),
		uintptr(unsafe.Pointer(&errBuf[0])), uintptr(len(errBuf)),
		1,
	}
	var h uintptr
	r := d.cuModuleLoadDataEx(&h, unsafe.Pointer(&img[0]), uint32(len(options)), &options[0], &values[0])
	runtime.KeepAlive(infoBuf)
	runtime.KeepAlive(errBuf)
	runtime.KeepAlive(img)
	return h, r, jitLog{cString(infoBuf), cString(errBuf), values[2], values[4], values[0]}
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// mustLoad loads image and looks up the entries that exist.
func mustLoad(t *testing.T, d *driver, image []byte) *module {
	t.Helper()
	h, r, log := loadModule(d, image)
	if r != cudaSuccess {
		t.Fatalf("cuModuleLoadDataEx = %d: %s", r, log.error)
	}
	m := &module{d: d, h: h, fn: map[string]uintptr{}}
	for _, name := range []string{"hk_process", "hk_init", "hk_migrate"} {
		var f uintptr
		switch r := d.cuModuleGetFunction(&f, h, name); r {
		case cudaSuccess:
			m.fn[name] = f
		case errNotFound:
		default:
			t.Fatalf("cuModuleGetFunction(%s) = %d", name, r)
		}
	}
	return m
}

// global reads a global's size and little-endian value.
func (m *module) global(t *testing.T, name string) (size, value uint64, r int32) {
	t.Helper()
	var p uint64
	if r := m.d.cuModuleGetGlobal(&p, &size, m.h, name); r != cudaSuccess {
		return 0, 0, r
	}
	b := make([]byte, 8)
	check(t, "cuMemcpyDtoH_v2", m.d.cuMemcpyDtoH(unsafe.Pointer(&b[0]), p, size), cudaSuccess)
	return size, binary.LittleEndian.Uint64(b), cudaSuccess
}

// launch launches entry with the given argument values (uint32 or uint64
// each) on stream, and returns the launch's result.
func (m *module) launch(entry string, grid, block uint32, stream uintptr, args ...any) int32 {
	params := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case uint32:
			params[i] = unsafe.Pointer(&v)
		case uint64:
			params[i] = unsafe.Pointer(&v)
		default:
			panic("launch argument of another type")
		}
	}
	r := m.d.cuLaunchKernel(m.fn[entry], grid, 1, 1, block, 1, 1, 0, stream, &params[0], nil)
	runtime.KeepAlive(params)
	return r
}
