package cuda

// Tests that need a GPU. They run where Load("") finds a driver library
// with a device, and skip otherwise, unless HOTKERNEL_REQUIRE_GPU=1 is
// set, which turns the skip into a failure.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// addOnePTX adds 1 to each of the n 32-bit words at data.
const addOnePTX = `
.version 7.0
.target sm_52
.address_size 64

.visible .entry add_one(
	.param .u64 data,
	.param .u32 n
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<7>;
	.reg .b64 %rd<5>;

	ld.param.u64 %rd1, [data];
	ld.param.u32 %r1, [n];
	mov.u32 %r2, %ctaid.x;
	mov.u32 %r3, %ntid.x;
	mov.u32 %r4, %tid.x;
	mad.lo.s32 %r5, %r2, %r3, %r4;
	setp.ge.u32 %p1, %r5, %r1;
	@%p1 bra DONE;
	cvta.to.global.u64 %rd2, %rd1;
	mul.wide.u32 %rd3, %r5, 4;
	add.s64 %rd4, %rd2, %rd3;
	ld.global.u32 %r6, [%rd4];
	add.u32 %r6, %r6, 1;
	st.global.u32 [%rd4], %r6;
DONE:
	ret;
}
`

// storeNullPTX stores to address 0: an illegal address, a sticky error.
const storeNullPTX = `
.version 7.0
.target sm_52
.address_size 64

.visible .entry store_null()
{
	.reg .b32 %r<2>;
	.reg .b64 %rd<2>;

	mov.u64 %rd1, 0;
	mov.u32 %r1, 7;
	st.global.u32 [%rd1], %r1;
	ret;
}
`

// globalPTX defines a global variable and no kernel.
const globalPTX = `
.version 7.0
.target sm_52
.address_size 64

.visible .global .u64 x = 42;
`

// invalidPTX has an unknown instruction on line 7.
const invalidPTX = `
.version 7.0
.target sm_52
.address_size 64

.visible .entry broken()
{
	frobnicate.u32 %r1;
	ret;
}
`

// gpuDriver returns the driver and its first device, skipping the test
// (failing it under HOTKERNEL_REQUIRE_GPU=1) when there is none.
func gpuDriver(t *testing.T) (*Driver, *Device) {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("HOTKERNEL_REQUIRE_GPU") == "1" {
			t.Fatalf("HOTKERNEL_REQUIRE_GPU=1, but %s", msg)
		}
		t.Skip(msg)
	}
	d, err := Load("")
	if err != nil {
		unavailable("no GPU: %v", err)
	}
	n, err := d.DeviceCount()
	if err != nil {
		t.Fatalf("DeviceCount: %v", err)
	}
	if n == 0 {
		unavailable("no GPU: the driver %s reports no device", d.Path())
	}
	dev, err := d.Device(0)
	if err != nil {
		t.Fatalf("Device(0): %v", err)
	}
	if strings.Contains(dev.Name, "fake") {
		// internal/cudafake's stand-in runs only kernels bound to host code.
		unavailable("no GPU: %s at %s is a stand-in", dev.Name, d.Path())
	}
	return d, dev
}

// gpuContext returns a new context on the first device, destroyed when
// the test ends.
func gpuContext(t *testing.T) *Context {
	t.Helper()
	d, dev := gpuDriver(t)
	c, err := d.NewContext(dev)
	if err != nil {
		t.Fatalf("NewContext: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	return c
}

// loadPTX loads one of the test's modules, failing the test with the JIT
// log on error.
func loadPTX(t *testing.T, c *Context, ptx string) *Module {
	t.Helper()
	m, log, err := c.LoadModule([]byte(ptx), JITOptions{Verbose: true})
	if err != nil {
		t.Fatalf("LoadModule: %v\ninfo log: %s\nerror log: %s", err, log.Info, log.Error)
	}
	t.Logf("JIT: %v; info log: %q", log.WallTime, log.Info)
	return m
}

// runAddOne runs add_one over n words with page-locked buffers on a new
// stream and checks the result.
func runAddOne(t *testing.T, c *Context, n int) {
	t.Helper()
	m := loadPTX(t, c, addOnePTX)
	defer m.Unload()
	f, err := m.Function("add_one")
	if err != nil {
		t.Fatal(err)
	}
	in, err := c.AllocHost(4 * n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.FreeHost(in)
	out, err := c.AllocHost(4 * n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.FreeHost(out)
	for i := range n {
		binary.LittleEndian.PutUint32(in[4*i:], uint32(3*i))
	}
	dp, err := c.Alloc(uint64(4 * n))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free(dp)
	s, err := c.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	ev, err := c.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Destroy()

	const block = 256
	grid := uint32((n + block - 1) / block)
	if err := s.CopyHtoD(dp, in); err != nil {
		t.Fatal(err)
	}
	if err := s.Launch(f, Dim3{grid, 1, 1}, Dim3{block, 1, 1}, 0, uint64(dp), uint64(n)); err != nil {
		t.Fatal(err)
	}
	if err := s.CopyDtoH(out, dp); err != nil {
		t.Fatal(err)
	}
	if err := ev.Record(s); err != nil {
		t.Fatal(err)
	}
	if err := ev.Synchronize(); err != nil {
		t.Fatal(err)
	}
	if done, err := ev.Query(); !done || err != nil {
		t.Errorf("Event.Query after Synchronize = %v, %v", done, err)
	}
	if err := s.Synchronize(); err != nil {
		t.Fatal(err)
	}
	if done, err := s.Query(); !done || err != nil {
		t.Errorf("Stream.Query after Synchronize = %v, %v", done, err)
	}
	for i := range n {
		if got := binary.LittleEndian.Uint32(out[4*i:]); got != uint32(3*i+1) {
			t.Fatalf("word %d = %d, want %d", i, got, 3*i+1)
		}
	}
}

func TestGPUDevice(t *testing.T) {
	d, dev := gpuDriver(t)
	t.Logf("driver %s, CUDA %d; device 0: %s, %s, %d SMs, %d MiB",
		d.Path(), d.Version(), dev.Name, dev.Arch(), dev.Multiprocessors, dev.TotalMemory>>20)
	if d.Version() < 1000 || dev.Name == "" || dev.Major < 5 || dev.Multiprocessors <= 0 || dev.TotalMemory == 0 {
		t.Errorf("implausible driver or device: %d %+v", d.Version(), dev)
	}
	if dev.Arch() != fmt.Sprintf("sm_%d%d", dev.Major, dev.Minor) {
		t.Errorf("Arch %q", dev.Arch())
	}
	n, _ := d.DeviceCount()
	_, err := d.Device(n)
	if !errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), fmt.Sprintf("device %d", n)) ||
		!strings.Contains(err.Error(), fmt.Sprintf("reports %d", n)) {
		t.Errorf("Device(%d) = %v", n, err)
	}
	if _, err := d.Device(-1); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Device(-1) = %v", err)
	}
}

func TestGPUAddOne(t *testing.T) {
	c := gpuContext(t)
	runAddOne(t, c, 1024)
}

func TestGPUFunctionNotFound(t *testing.T) {
	c := gpuContext(t)
	m := loadPTX(t, c, addOnePTX)
	_, err := m.Function("no_such_kernel")
	var e *Error
	if !errors.As(err, &e) || e.Code != ErrNotFound || e.Op != "cuModuleGetFunction" {
		t.Errorf("Function(no_such_kernel) = %v, want CUDA_ERROR_NOT_FOUND", err)
	}
	if err := m.Unload(); err != nil {
		t.Fatal(err)
	}
	if err := m.Unload(); err != nil {
		t.Errorf("second Unload: %v", err)
	}
	if _, err := m.Function("add_one"); !errors.Is(err, ErrDestroyed) {
		t.Errorf("Function after Unload: %v", err)
	}
}

func TestGPUJITError(t *testing.T) {
	c := gpuContext(t)
	m, log, err := c.LoadModule([]byte(invalidPTX), JITOptions{})
	if m != nil || err == nil {
		t.Fatalf("LoadModule of invalid PTX succeeded")
	}
	var e *Error
	if !errors.As(err, &e) || e.Op != "cuModuleLoadDataEx" {
		t.Errorf("error %v is not an *Error of cuModuleLoadDataEx", err)
	}
	t.Logf("error: %v; error log: %q", err, log.Error)
	if !strings.Contains(log.Error, "line") {
		t.Errorf("the error log does not name a line: %q", log.Error)
	}
}

func TestGPUGlobal(t *testing.T) {
	c := gpuContext(t)
	m := loadPTX(t, c, globalPTX)
	p, size, err := m.Global("x")
	if err != nil {
		t.Fatal(err)
	}
	if size != 8 || p == 0 {
		t.Fatalf("Global(x) = %#x, %d bytes", p, size)
	}
	b := make([]byte, 8)
	if err := c.CopyDtoH(b, p); err != nil {
		t.Fatal(err)
	}
	if v := binary.LittleEndian.Uint64(b); v != 42 {
		t.Errorf("x = %d, want 42", v)
	}
	if _, _, err := m.Global("y"); CodeOf(err) != ErrNotFound {
		t.Errorf("Global(y) = %v, want CUDA_ERROR_NOT_FOUND", err)
	}
}

// TestGPUMemory: synchronous copies, memsets and device-to-device copies.
func TestGPUMemory(t *testing.T) {
	c := gpuContext(t)
	const n = 4096
	a, err := c.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MemsetD32(a, 0xdeadbeef, n/4); err != nil {
		t.Fatal(err)
	}
	if err := s.MemsetD8(a, 0x11, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.CopyDtoD(b, a, n); err != nil {
		t.Fatal(err)
	}
	if err := s.Synchronize(); err != nil {
		t.Fatal(err)
	}
	host := make([]byte, n)
	if err := c.CopyDtoH(host, b); err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(host[0:]); got != 0x11111111 {
		t.Errorf("word 0 = %#x", got)
	}
	if got := binary.LittleEndian.Uint32(host[n-4:]); got != 0xdeadbeef {
		t.Errorf("last word = %#x", got)
	}
	copy(host, "hello")
	if err := c.CopyHtoD(a, host); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, 5)
	if err := c.CopyDtoH(back, a); err != nil || string(back) != "hello" {
		t.Errorf("round trip: %q, %v", back, err)
	}
	if err := c.Free(a); err != nil {
		t.Error(err)
	}
	if err := c.Free(b); err != nil {
		t.Error(err)
	}
	if err := s.Destroy(); err != nil {
		t.Error(err)
	}
	if err := s.Destroy(); err != nil {
		t.Errorf("second Stream.Destroy: %v", err)
	}
	if err := s.MemsetD8(a, 0, 1); !errors.Is(err, ErrDestroyed) {
		t.Errorf("MemsetD8 after Stream.Destroy: %v", err)
	}

	// Memory of the caller, page-locked for the context.
	buf := make([]byte, 1<<16)
	if err := c.HostRegister(buf); errors.Is(err, ErrNoDriver) {
		t.Logf("HostRegister: %v", err)
	} else if err != nil {
		t.Errorf("HostRegister: %v", err)
	} else if err := c.HostUnregister(buf); err != nil {
		t.Errorf("HostUnregister: %v", err)
	}
}

// TestGPUCubin loads a CUBIN (an ELF image, passed as is) built for the
// device's architecture from the repository's test data, and runs its
// kernels vadd (with pageable Go memory) and vscale (a float parameter).
func TestGPUCubin(t *testing.T) {
	c := gpuContext(t)
	path := filepath.Join("..", "..", "code", "testdata", "cubin", "vadd."+c.Device().Arch()+".cubin")
	image, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no CUBIN for %s: %v", c.Device().Arch(), err)
	}
	m, log, err := c.LoadModule(image, JITOptions{})
	if err != nil {
		t.Fatalf("LoadModule(%s): %v; %s", path, err, log.Error)
	}
	vadd, err := m.Function("vadd")
	if err != nil {
		t.Fatal(err)
	}
	vscale, err := m.Function("vscale")
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	host := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(host[4*i:], math.Float32bits(float32(i)))
	}
	bufs := make([]DevicePtr, 3)
	for i := range bufs {
		if bufs[i], err = c.Alloc(4 * n); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CopyHtoD(bufs[0], host); err != nil {
		t.Fatal(err)
	}
	if err := c.CopyHtoD(bufs[1], host); err != nil {
		t.Fatal(err)
	}
	s, err := c.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	grid, block := Dim3{(n + 127) / 128, 1, 1}, Dim3{128, 1, 1}
	if err := s.Launch(vadd, grid, block, 0, uint64(bufs[0]), uint64(bufs[1]), uint64(bufs[2]), n); err != nil {
		t.Fatal(err)
	}
	if err := s.Launch(vscale, grid, block, 0, uint64(bufs[2]), uint64(math.Float32bits(0.25)), n); err != nil {
		t.Fatal(err)
	}
	if err := s.CopyDtoH(host, bufs[2]); err != nil {
		t.Fatal(err)
	}
	if err := s.Synchronize(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(host[4*i:])); got != float32(i)/2 {
			t.Fatalf("element %d = %v, want %v", i, got, float32(i)/2)
		}
	}
}

// TestGPUConcurrent launches from several goroutines at once, each with
// its own stream and buffer, in one context.
func TestGPUConcurrent(t *testing.T) {
	c := gpuContext(t)
	m := loadPTX(t, c, addOnePTX)
	f, err := m.Function("add_one")
	if err != nil {
		t.Fatal(err)
	}
	const workers, rounds, n = 8, 50, 512
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				s, err := c.NewStream()
				if err != nil {
					return err
				}
				defer s.Destroy()
				dp, err := c.Alloc(4 * n)
				if err != nil {
					return err
				}
				defer c.Free(dp)
				if err := s.MemsetD32(dp, uint32(w), n); err != nil {
					return err
				}
				for range rounds {
					if err := s.Launch(f, Dim3{2, 1, 1}, Dim3{256, 1, 1}, 0, uint64(dp), n); err != nil {
						return err
					}
				}
				out := make([]byte, 4*n)
				if err := s.CopyDtoH(out, dp); err != nil {
					return err
				}
				if err := s.Synchronize(); err != nil {
					return err
				}
				for i := range n {
					if got := binary.LittleEndian.Uint32(out[4*i:]); got != uint32(w+rounds) {
						return fmt.Errorf("worker %d: word %d = %d, want %d", w, i, got, w+rounds)
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestGPUStickyRecovery: a kernel storing to address 0 leaves its context
// with a sticky error; after Destroy a new context works.
func TestGPUStickyRecovery(t *testing.T) {
	d, dev := gpuDriver(t)
	c, err := d.NewContext(dev)
	if err != nil {
		t.Fatal(err)
	}
	m := loadPTX(t, c, storeNullPTX)
	f, err := m.Function("store_null")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Launch(f, Dim3{1, 1, 1}, Dim3{1, 1, 1}, 0); err != nil && !IsSticky(err) {
		t.Fatalf("Launch: %v", err)
	}
	err = s.Synchronize()
	t.Logf("Synchronize after the faulting kernel: %v", err)
	if !IsSticky(err) {
		t.Fatalf("Synchronize = %v, want a sticky error", err)
	}
	// The context stays unusable.
	if _, err := c.Alloc(16); !IsSticky(err) {
		t.Errorf("Alloc in the faulted context = %v, want a sticky error", err)
	}
	if err := c.Destroy(); err != nil {
		t.Logf("Destroy of the faulted context: %v", err)
	}
	if err := c.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if err := m.Unload(); err != nil {
		t.Errorf("Unload after Destroy: %v", err)
	}
	if err := s.Destroy(); err != nil {
		t.Errorf("Stream.Destroy after Destroy: %v", err)
	}
	if err := s.Synchronize(); !errors.Is(err, ErrDestroyed) {
		t.Errorf("Stream.Synchronize after Destroy: %v", err)
	}
	if _, err := c.Alloc(16); !errors.Is(err, ErrDestroyed) {
		t.Errorf("Alloc after Destroy: %v", err)
	}

	c2, err := d.NewContext(dev)
	if err != nil {
		t.Fatalf("NewContext after the fault: %v", err)
	}
	defer c2.Destroy()
	runAddOne(t, c2, 1024)
}
