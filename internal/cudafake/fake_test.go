package cudafake

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/hotkernel/hotkernel/backend/wasm"
	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/examples/kernels"
	cudakernels "github.com/hotkernel/hotkernel/examples/kernels/cuda"
)

func TestBuild(t *testing.T) {
	lib := Build(t)
	if fi, err := os.Stat(lib); err != nil || fi.Size() == 0 {
		t.Fatalf("Build returned %s: %v", lib, err)
	}
	if again := Build(t); again != lib {
		t.Errorf("second Build = %s, first %s", again, lib)
	}
	if w := built.warnings; w != "" {
		t.Errorf("the C compiler warned (-Wall):\n%s", w)
	}
}

func TestDevice(t *testing.T) {
	d, _ := load(t)
	var v, n, dev int32
	check(t, "cuDriverGetVersion", d.cuDriverGetVersion(&v), cudaSuccess)
	if v != 12040 {
		t.Errorf("driver version %d", v)
	}
	check(t, "cuDeviceGetCount", d.cuDeviceGetCount(&n), cudaSuccess)
	if n != 1 {
		t.Errorf("%d devices", n)
	}
	check(t, "cuDeviceGet(0)", d.cuDeviceGet(&dev, 0), cudaSuccess)
	check(t, "cuDeviceGet(1)", d.cuDeviceGet(&dev, 1), errInvalidDevice)
	name := make([]byte, 64)
	check(t, "cuDeviceGetName", d.cuDeviceGetName(&name[0], int32(len(name)), 0), cudaSuccess)
	if s := cString(name); s != "hotkernel fake GPU" {
		t.Errorf("name %q", s)
	}
	check(t, "cuDeviceGetName (short buffer)", d.cuDeviceGetName(&name[0], 5, 0), cudaSuccess)
	if s := cString(name); s != "hotk" {
		t.Errorf("name cut to 5 bytes: %q", s)
	}
	for attr, want := range map[int32]int32{75: 9, 76: 0, 16: 132, 1: 0, 10: 0} {
		check(t, "cuDeviceGetAttribute", d.cuDeviceGetAttribute(&v, attr, 0), cudaSuccess)
		if v != want {
			t.Errorf("attribute %d = %d, want %d", attr, v, want)
		}
	}
	var mem uint64
	check(t, "cuDeviceTotalMem_v2", d.cuDeviceTotalMem(&mem, 0), cudaSuccess)
	if mem != 80<<30 {
		t.Errorf("total memory %d", mem)
	}
	var s *byte
	check(t, "cuGetErrorName(700)", d.cuGetErrorName(700, &s), cudaSuccess)
	if got := cString(unsafe.Slice(s, 64)); got != "CUDA_ERROR_ILLEGAL_ADDRESS" {
		t.Errorf("cuGetErrorName(700) = %q", got)
	}
	check(t, "cuGetErrorString(218)", d.cuGetErrorString(218, &s), cudaSuccess)
	if got := cString(unsafe.Slice(s, 64)); got != "a PTX JIT compilation failed" {
		t.Errorf("cuGetErrorString(218) = %q", got)
	}
	check(t, "cuGetErrorName(12345)", d.cuGetErrorName(12345, &s), errInvalidValue)
	if s != nil {
		t.Error("cuGetErrorName of an unknown code left a string")
	}
}

func TestNoDevice(t *testing.T) {
	d, _ := load(t)
	t.Setenv(NoDeviceEnv, "1")
	check(t, "cuInit with "+NoDeviceEnv+"=1", d.cuInit(0), errNoDevice)
	os.Unsetenv(NoDeviceEnv)
	check(t, "cuInit", d.cuInit(0), cudaSuccess)
	check(t, "cuInit(1)", d.cuInit(1), errInvalidValue)
}

func TestContextStack(t *testing.T) {
	d, _ := load(t)
	lockThread()
	var p uint64
	var c uintptr
	check(t, "cuMemAlloc_v2 without a context", d.cuMemAlloc(&p, 16), errInvalidContext)
	check(t, "cuCtxSynchronize without a context", d.cuCtxSynchronize(), errInvalidContext)
	check(t, "cuCtxPopCurrent_v2 without a context", d.cuCtxPopCurrent(&c), errInvalidContext)

	a := newContext(t, d)
	b := newContext(t, d)
	check(t, "cuCtxPopCurrent_v2", d.cuCtxPopCurrent(&c), cudaSuccess)
	if c != b {
		t.Errorf("popped %x, want the last created %x", c, b)
	}
	a1 := alloc(t, d, 16) // in a, now current
	check(t, "cuCtxSetCurrent(b)", d.cuCtxSetCurrent(b), cudaSuccess)
	check(t, "cuMemFree_v2 of a's memory in b", d.cuMemFree(a1.ptr), errInvalidValue)
	check(t, "cuCtxDestroy_v2(b)", d.cuCtxDestroy(b), cudaSuccess)
	// b was current: destroying it popped it; the stack is empty.
	check(t, "cuMemAlloc_v2 after destroying the current context", d.cuMemAlloc(&p, 16), errInvalidContext)
	check(t, "cuCtxSetCurrent(destroyed)", d.cuCtxSetCurrent(b), errInvalidContext)
	check(t, "cuCtxDestroy_v2(destroyed)", d.cuCtxDestroy(b), errInvalidContext)
	check(t, "cuCtxSetCurrent(a)", d.cuCtxSetCurrent(a), cudaSuccess)
	check(t, "cuMemFree_v2 in a", d.cuMemFree(a1.ptr), cudaSuccess)
	check(t, "cuCtxSetCurrent(NULL)", d.cuCtxSetCurrent(0), cudaSuccess)
	check(t, "cuCtxSynchronize after popping", d.cuCtxSynchronize(), errInvalidContext)
}

func TestContextPerThread(t *testing.T) {
	d, _ := load(t)
	lockThread()
	created, destroyed, finished := make(chan uintptr), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		var ctx uintptr
		if r := d.cuCtxCreate(&ctx, 0, 0); r != cudaSuccess {
			t.Errorf("cuCtxCreate_v2 = %d", r)
			close(created)
			return
		}
		created <- ctx
		<-destroyed
		var p uint64
		if r := d.cuMemAlloc(&p, 16); r != errContextIsDestroyed {
			t.Errorf("cuMemAlloc_v2 in a context destroyed by another thread = %d, want %d", r, errContextIsDestroyed)
		}
	}()
	ctx, ok := <-created
	if !ok {
		return
	}
	var p uint64
	check(t, "cuMemAlloc_v2 in a thread without a current context", d.cuMemAlloc(&p, 16), errInvalidContext)
	check(t, "cuCtxSetCurrent", d.cuCtxSetCurrent(ctx), cudaSuccess)
	alloc(t, d, 16)
	check(t, "cuCtxDestroy_v2", d.cuCtxDestroy(ctx), cudaSuccess)
	close(destroyed)
	<-finished
}

// ptxGlobal matches a global definition in a PTX module.
var ptxGlobal = regexp.MustCompile(`(?m)^\.visible \.global (?:\.align \d+ )?\.[us](32|64) (\w+)(?: = (\d+))?;$`)

func TestGlobalsAndEntries(t *testing.T) {
	d, _ := load(t)
	lockThread()
	newContext(t, d)
	for _, name := range cudakernels.Names() {
		// Another image than the bound one: the same module, unbound.
		ptx := append([]byte("// unbound copy\n"), cudakernels.PTX(name)...)
		m := mustLoad(t, d, ptx)
		matches := ptxGlobal.FindAllStringSubmatch(string(ptx), -1)
		if len(matches) != 5 {
			t.Fatalf("%s: %d globals in the PTX", name, len(matches))
		}
		for _, g := range matches {
			size, value, r := m.global(t, g[2])
			check(t, "cuModuleGetGlobal_v2("+g[2]+")", r, cudaSuccess)
			want := "0"
			if g[3] != "" {
				want = g[3]
			}
			if fmt.Sprint(size*8) != g[1] || fmt.Sprint(value) != want {
				t.Errorf("%s: %s is %d bytes = %d, want %s bits = %s", name, g[2], size, value, g[1], want)
			}
		}
		if _, _, r := m.global(t, "hk_nothing"); r != errNotFound {
			t.Errorf("%s: missing global: %d", name, r)
		}
		var f uintptr
		check(t, "cuModuleGetFunction(missing)", d.cuModuleGetFunction(&f, m.h, "hk_nothing"), errNotFound)
		if _, ok := m.fn["hk_process"]; !ok {
			t.Fatalf("%s: no hk_process", name)
		}
		if name != "trivial" && len(m.fn) != 3 || name == "trivial" && len(m.fn) != 2 {
			t.Errorf("%s: entries %v", name, m.fn)
		}
		if r := m.launch("hk_init", 1, 1, 0, uint64(0), uint64(0)); r != errNotSupported {
			t.Errorf("%s: launching an unbound module = %d, want %d", name, r, errNotSupported)
		}
		check(t, "cuModuleUnload", d.cuModuleUnload(m.h), cudaSuccess)
		check(t, "cuModuleUnload(stale)", d.cuModuleUnload(m.h), errInvalidHandle)
		check(t, "cuModuleGetFunction(stale)", d.cuModuleGetFunction(&f, m.h, "hk_process"), errInvalidHandle)
	}
}

func TestJIT(t *testing.T) {
	d, lib := load(t)
	lockThread()
	newContext(t, d)
	ptx := cudakernels.PTX("trivial")

	_, r, log := loadModule(d, []byte("// no version\n.target sm_52\n"))
	check(t, "loading PTX without .version", r, errInvalidPTX)
	if !strings.HasPrefix(log.error, "ptxas application ptx input, line 1; error   : Missing .version directive") {
		t.Errorf("error log %q", log.error)
	}
	if int(log.errorSize) != len(log.error) || log.info != "" || log.infoSize != 0 {
		t.Errorf("log sizes written back: info %d (%q), error %d for %d bytes", log.infoSize, log.info, log.errorSize, len(log.error))
	}

	lines := strings.SplitAfter(string(ptx), "\n")
	lines[4] = "// hk_fake_jit_error\n"
	_, r, log = loadModule(d, []byte(strings.Join(lines, "")))
	check(t, "loading PTX with hk_fake_jit_error", r, errInvalidPTX)
	if !strings.HasPrefix(log.error, "ptxas application ptx input, line 5; error   : ") {
		t.Errorf("error log %q", log.error)
	}

	_, r, log = loadModule(d, cudakernels.CUBIN("trivial", "sm_90"))
	check(t, "loading a CUBIN", r, errNoBinaryForGPU)
	if !strings.Contains(log.error, "PTX text only") {
		t.Errorf("error log %q", log.error)
	}

	if err := Bind(lib, ptx, "trivial"); err != nil {
		t.Fatal(err)
	}
	h, r, log := loadModule(d, ptx)
	check(t, "loading trivial", r, cudaSuccess)
	if !strings.Contains(log.info, "2 entries, 5 globals; runs host implementation trivial") || log.error != "" {
		t.Errorf("logs %+v", log)
	}
	if int(log.infoSize) != len(log.info) || log.errorSize != 0 {
		t.Errorf("log sizes written back: info %d for %d bytes, error %d", log.infoSize, len(log.info), log.errorSize)
	}
	if uint32(log.wallBits) != 0 {
		t.Errorf("CU_JIT_WALL_TIME slot holds 0x%x, want the float 0", log.wallBits)
	}
	check(t, "cuModuleUnload", d.cuModuleUnload(h), cudaSuccess)
}

func TestMemoryChecks(t *testing.T) {
	d, _ := load(t)
	lockThread()
	newContext(t, d)
	m := alloc(t, d, 64)
	b := make([]byte, 128)
	check(t, "copy past the allocation", d.cuMemcpyHtoD(m.ptr+32, unsafe.Pointer(&b[0]), 33), errInvalidValue)
	check(t, "copy to its end", d.cuMemcpyHtoD(m.ptr+32, unsafe.Pointer(&b[0]), 32), cudaSuccess)
	check(t, "copy from outside", d.cuMemcpyDtoH(unsafe.Pointer(&b[0]), 4096, 8), errInvalidValue)
	check(t, "misaligned memset D32", d.cuMemsetD32Async(m.ptr+2, 1, 4, 0), errInvalidValue)
	check(t, "memset D32 past the end", d.cuMemsetD32Async(m.ptr, 1, 17, 0), errInvalidValue)
	check(t, "memset D8", d.cuMemsetD8Async(m.ptr, 7, 64, 0), cudaSuccess)
	if got := m.read(t); !bytes.Equal(got, bytes.Repeat([]byte{7}, 64)) {
		t.Errorf("after memset: %v", got)
	}
	m2 := alloc(t, d, 64)
	check(t, "DtoD", d.cuMemcpyDtoDAsync(m2.ptr, m.ptr, 64, 0), cudaSuccess)
	if got := m2.read(t); !bytes.Equal(got, bytes.Repeat([]byte{7}, 64)) {
		t.Errorf("after DtoD: %v", got)
	}
	check(t, "cuMemFree_v2 inside an allocation", d.cuMemFree(m.ptr+8), errInvalidValue)
	check(t, "cuMemFree_v2", d.cuMemFree(m.ptr), cudaSuccess)
	check(t, "cuMemFree_v2 twice", d.cuMemFree(m.ptr), errInvalidValue)
	check(t, "cuMemAlloc_v2(0)", d.cuMemAlloc(new(uint64), 0), errInvalidValue)

	var host unsafe.Pointer
	check(t, "cuMemAllocHost_v2", d.cuMemAllocHost(&host, 100), cudaSuccess)
	hb := unsafe.Slice((*byte)(host), 100)
	hb[99] = 42
	check(t, "HtoD from page-locked memory", d.cuMemcpyHtoDAsync(m2.ptr, unsafe.Add(host, 99), 1, 0), cudaSuccess)
	if m2.read(t)[0] != 42 {
		t.Error("HtoD copied the wrong byte")
	}
	check(t, "cuMemFreeHost", d.cuMemFreeHost(host), cudaSuccess)
	check(t, "cuMemFreeHost twice", d.cuMemFreeHost(host), errInvalidValue)

	var s, e uintptr
	check(t, "cuStreamCreate", d.cuStreamCreate(&s, 1), cudaSuccess)
	check(t, "cuEventCreate", d.cuEventCreate(&e, 2), cudaSuccess)
	check(t, "cuEventRecord", d.cuEventRecord(e, s), cudaSuccess)
	check(t, "cuEventQuery", d.cuEventQuery(e), cudaSuccess)
	check(t, "cuEventSynchronize", d.cuEventSynchronize(e), cudaSuccess)
	check(t, "cuStreamQuery", d.cuStreamQuery(s), cudaSuccess)
	check(t, "cuEventRecord on the legacy stream", d.cuEventRecord(e, 1), cudaSuccess)
	check(t, "cuEventRecord(stream as event)", d.cuEventRecord(s, s), errInvalidHandle)
	check(t, "cuEventDestroy_v2", d.cuEventDestroy(e), cudaSuccess)
	check(t, "cuEventDestroy_v2 twice", d.cuEventDestroy(e), errInvalidHandle)
	check(t, "cuStreamDestroy_v2", d.cuStreamDestroy(s), cudaSuccess)
	check(t, "cuStreamSynchronize(destroyed)", d.cuStreamSynchronize(s), errInvalidHandle)

	// A stream of another context is no stream here.
	newContext(t, d)
	var s2 uintptr
	check(t, "cuStreamCreate", d.cuStreamCreate(&s2, 0), cudaSuccess)
	var c uintptr
	check(t, "cuCtxPopCurrent_v2", d.cuCtxPopCurrent(&c), cudaSuccess)
	check(t, "cuStreamQuery(other context's stream)", d.cuStreamQuery(s2), errInvalidHandle)
}

func TestHostRegister(t *testing.T) {
	d, _ := load(t)
	lockThread()
	ctx := newContext(t, d)
	b := make([]byte, 4096)
	p := unsafe.Pointer(&b[0])
	check(t, "cuMemHostRegister_v2", d.cuMemHostRegister(p, 4096, 0), cudaSuccess)
	check(t, "cuMemHostRegister_v2 overlapping", d.cuMemHostRegister(unsafe.Add(p, 100), 10, 0), errAlreadyRegistered)
	check(t, "cuMemHostUnregister inside", d.cuMemHostUnregister(unsafe.Add(p, 100)), errNotRegistered)
	m := alloc(t, d, 64)
	check(t, "DtoD from registered memory", d.cuMemcpyDtoDAsync(m.ptr, uint64(uintptr(p)), 64, 0), cudaSuccess)
	check(t, "cuMemHostUnregister", d.cuMemHostUnregister(p), cudaSuccess)
	check(t, "cuMemHostUnregister twice", d.cuMemHostUnregister(p), errNotRegistered)
	check(t, "cuMemHostRegister_v2", d.cuMemHostRegister(p, 4096, 0), cudaSuccess)
	// Destroying the context forgets the registration; the memory is the
	// caller's and stays usable.
	check(t, "cuCtxDestroy_v2", d.cuCtxDestroy(ctx), cudaSuccess)
	b[4095] = 1
	runtime.KeepAlive(b)
}

func TestTrivial(t *testing.T) {
	d, lib := load(t)
	lockThread()
	newContext(t, d)
	k := newKernel(t, d, lib, "trivial", true)
	if k.block != 256 || k.maxOut != 0 || k.stateLen != 16 || k.layout != 1 {
		t.Fatalf("trivial: block %d, max output %d, state %d bytes, layout %d", k.block, k.maxOut, k.stateLen, k.layout)
	}
	var messages, total uint64
	for _, n := range []int{1, 255, 256, 257, 1000} {
		msgs := make([][]byte, n)
		for i := range msgs {
			msgs[i] = make([]byte, i%37)
			total += uint64(i % 37)
		}
		messages += uint64(n)
		status, outs := k.process(msgs)
		for i, s := range status {
			if s != 0 {
				t.Fatalf("batch of %d: message %d has status 0x%x", n, i, s)
			}
		}
		if len(outs) != 0 {
			t.Errorf("%d outputs", len(outs))
		}
		st := k.stateBytes()
		if got, gotBytes := binary.LittleEndian.Uint64(st), binary.LittleEndian.Uint64(st[8:]); got != messages || gotBytes != total {
			t.Fatalf("after a batch of %d: state {%d, %d}, want {%d, %d}", n, got, gotBytes, messages, total)
		}
	}
}

// counterMessages returns n counter messages, mostly valid, with some of
// a wrong length (error 2) and some of a producer out of range (error 1).
func counterMessages(r *rand.Rand, n int) [][]byte {
	msgs := make([][]byte, n)
	for i := range msgs {
		switch r.IntN(16) {
		case 0:
			msgs[i] = make([]byte, []int{0, 8, 15, 17, 32}[r.IntN(5)])
		case 1:
			msgs[i] = counterMessage(64+r.Uint32N(1000), r.Uint64())
		default:
			seq := r.Uint64()
			if r.IntN(2) == 0 {
				seq = uint64(r.IntN(100000))
			}
			msgs[i] = counterMessage(r.Uint32N(64), seq)
		}
	}
	return msgs
}

func counterMessage(producer uint32, seq uint64) []byte {
	m := make([]byte, 16)
	binary.LittleEndian.PutUint32(m, producer)
	binary.LittleEndian.PutUint32(m[4:], 0xdeadbeef)
	binary.LittleEndian.PutUint64(m[8:], seq)
	return m
}

// wasmKernel is the WebAssembly build of a counter.
type wasmKernel struct {
	t  *testing.T
	in *wasm.Instance
}

func newWasm(t *testing.T, rt *wasm.Runtime, name string, fresh bool) *wasmKernel {
	t.Helper()
	m, err := rt.Compile(context.Background(), code.FromWASM(kernels.Wasm(name), ""))
	if err != nil {
		t.Fatal(err)
	}
	in, err := m.Instantiate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if fresh {
		if err := in.Init(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return &wasmKernel{t, in}
}

// process returns what the CUDA kernel reports: a status per message and
// the outputs in order.
func (w *wasmKernel) process(msgs [][]byte) ([]uint32, [][]byte) {
	var outs [][]byte
	res, err := w.in.Process(context.Background(), msgs, func(b []byte) { outs = append(outs, bytes.Clone(b)) })
	if err != nil {
		w.t.Fatal(err)
	}
	status := make([]uint32, len(msgs))
	for _, f := range res.Failures {
		var ke *wasm.KernelError
		if !errors.As(f.Err, &ke) {
			w.t.Fatalf("message %d: %v", f.Index, f.Err)
		}
		status[f.Index] = uint32(ke.Code)
	}
	return status, outs
}

// migrate returns hk_migrate's code, 0 on success.
func (w *wasmKernel) migrate(layout uint32, version uint64, old []byte) uint32 {
	err := w.in.ImportState(context.Background(), layout, version, old)
	var ke *wasm.KernelError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ke):
		return uint32(ke.Code)
	}
	w.t.Fatal(err)
	return 0
}

func newRuntime(t *testing.T) *wasm.Runtime {
	t.Helper()
	rt, err := wasm.NewRuntime(context.Background(), wasm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

// TestCountersMatchWasm runs the same batches through each counter's
// WebAssembly build and its CUDA source (as host C): statuses, outputs
// and state bytes must be the same after every batch, and so must
// migrations between every pair of layouts and sizes.
func TestCountersMatchWasm(t *testing.T) {
	d, lib := load(t)
	rt := newRuntime(t)
	names := []string{"counter_v1", "counter_v2", "counter_v1_1m", "counter_v2_1m", "counter_v2_broken"}
	states := map[string][]byte{}
	lockThread()
	newContext(t, d)
	for _, name := range names {
		r := rand.New(rand.NewPCG(1, uint64(len(name))))
		w, k := newWasm(t, rt, name, true), newKernel(t, d, lib, name, true)
		if !bytes.Equal(w.in.StateView(), k.stateBytes()) {
			t.Fatalf("%s: the states differ after hk_init", name)
		}
		for _, n := range []int{1, 7, 100, 600} {
			msgs := counterMessages(r, n)
			if name == "counter_v2_broken" {
				msgs = noFault(msgs)
			}
			ws, wo := w.process(msgs)
			cs, co := k.process(msgs)
			if fmt.Sprint(ws) != fmt.Sprint(cs) {
				t.Fatalf("%s: statuses\nwasm %v\ncuda %v", name, ws, cs)
			}
			if len(wo) != len(co) {
				t.Fatalf("%s: %d outputs from wasm, %d from cuda", name, len(wo), len(co))
			}
			for i := range wo {
				if !bytes.Equal(wo[i], co[i]) {
					t.Fatalf("%s: output %d: wasm %x, cuda %x", name, i, wo[i], co[i])
				}
			}
			if !bytes.Equal(w.in.StateView(), k.stateBytes()) {
				t.Fatalf("%s: the states differ after a batch of %d", name, n)
			}
		}
		if binary.LittleEndian.Uint64(k.stateBytes()) == 0 {
			t.Errorf("%s: the state's first word is still 0", name)
		}
		states[name] = bytes.Clone(w.in.StateView())
	}

	layouts := map[string]uint32{"counter_v1": 1, "counter_v1_1m": 1, "counter_v2": 2, "counter_v2_1m": 2}
	for from, layout := range layouts {
		old := states[from]
		cases := map[string]struct {
			layout uint32
			old    []byte
		}{
			"":              {layout, old},
			"layout 3":      {3, old},
			"short":         {layout, old[:100]},
			"no histogram":  {layout, old[:1040]},
			"extra_len off": {layout, append(bytes.Clone(old), 0)},
		}
		for to := range layouts {
			for what, c := range cases {
				w, k := newWasm(t, rt, to, false), newKernel(t, d, lib, to, false)
				wr, cr := w.migrate(c.layout, 7, c.old), k.migrate(c.layout, 7, c.old)
				if wr != cr {
					t.Errorf("%s → %s %s: hk_migrate returned %d in wasm, %d in cuda", from, to, what, wr, cr)
				}
				if !bytes.Equal(w.in.StateView(), k.stateBytes()) {
					t.Errorf("%s → %s %s: the states differ after hk_migrate (code %d)", from, to, what, wr)
				}
			}
		}
	}
}

// noFault drops the messages that counter_v2_broken faults on.
func noFault(msgs [][]byte) [][]byte {
	var keep [][]byte
	for _, m := range msgs {
		if len(m) != 16 || binary.LittleEndian.Uint32(m) >= 64 || binary.LittleEndian.Uint64(m[8:])%7 != 3 {
			keep = append(keep, m)
		}
	}
	return keep
}

// TestCounter64M checks the 64 MiB variants, which have no WebAssembly
// twin, against the 4 KiB ones: the same counters, a bigger histogram.
func TestCounter64M(t *testing.T) {
	d, lib := load(t)
	lockThread()
	newContext(t, d)
	for _, v := range []struct {
		name, small      string
		header, extraOff int
	}{{"counter_v1_64m", "counter_v1", 1040, 8}, {"counter_v2_64m", "counter_v2", 1048, 1040}} {
		big, small := newKernel(t, d, lib, v.name, true), newKernel(t, d, lib, v.small, true)
		if big.stateLen != 64<<20 {
			t.Fatalf("%s: hk_state_len %d", v.name, big.stateLen)
		}
		r := rand.New(rand.NewPCG(2, 3))
		msgs := counterMessages(r, 500)
		bs, bo := big.process(msgs)
		ss, so := small.process(msgs)
		if fmt.Sprint(bs) != fmt.Sprint(ss) || fmt.Sprint(bo) != fmt.Sprint(so) {
			t.Fatalf("%s: statuses or outputs differ from %s", v.name, v.small)
		}
		bst, sst := big.stateBytes(), small.stateBytes()
		extra := uint64(len(bst) - v.header)
		if got := binary.LittleEndian.Uint64(bst[v.extraOff:]); got != extra {
			t.Errorf("%s: extra_len %d, want %d", v.name, got, extra)
		}
		// Apart from extra_len the headers agree.
		bh, sh := bytes.Clone(bst[:v.header]), bytes.Clone(sst[:v.header])
		clear(bh[v.extraOff : v.extraOff+8])
		clear(sh[v.extraOff : v.extraOff+8])
		if !bytes.Equal(bh, sh) {
			t.Errorf("%s: header differs from %s", v.name, v.small)
		}
		hist := make([]byte, extra)
		for i, m := range msgs {
			if bs[i] == 0 {
				hist[binary.LittleEndian.Uint64(m[8:])%extra]++
			}
		}
		if !bytes.Equal(bst[v.header:], hist) {
			t.Errorf("%s: the histogram is not that of the messages", v.name)
		}
	}
}

func TestBrokenFaults(t *testing.T) {
	d, lib := load(t)
	lockThread()
	other := newContext(t, d)
	good := newKernel(t, d, lib, "counter_v2", true)
	ctx := newContext(t, d)
	k := newKernel(t, d, lib, "counter_v2_broken", true)

	status, outs := k.process([][]byte{counterMessage(1, 0), counterMessage(2, 1), counterMessage(3, 2)})
	if fmt.Sprint(status) != "[0 0 0]" || len(outs) != 3 || binary.LittleEndian.Uint32(outs[0][4:]) != 3 {
		t.Fatalf("before the fault: statuses %v, outputs %x (want tag 3)", status, outs)
	}
	destroys := Calls(lib, "cuCtxDestroy_v2")
	b := k.prepare([][]byte{counterMessage(1, 4), counterMessage(1, 10), counterMessage(1, 11)})
	check(t, "the faulting launch", b.launch(), cudaSuccess)
	if f := LastFault(lib); !strings.Contains(f, "hk_process of counter_v2_broken") || !strings.Contains(f, "HK_FAULT") {
		t.Errorf("LastFault = %q", f)
	}
	// Sticky: every call in the context fails with 700.
	var p uint64
	var h uintptr
	buf := make([]byte, 8)
	check(t, "cuStreamSynchronize", d.cuStreamSynchronize(k.stream), errIllegalAddress)
	check(t, "cuStreamQuery", d.cuStreamQuery(k.stream), errIllegalAddress)
	check(t, "cuCtxSynchronize", d.cuCtxSynchronize(), errIllegalAddress)
	check(t, "cuMemcpyDtoH_v2", d.cuMemcpyDtoH(unsafe.Pointer(&buf[0]), k.state.ptr, 8), errIllegalAddress)
	check(t, "cuMemAlloc_v2", d.cuMemAlloc(&p, 16), errIllegalAddress)
	check(t, "cuStreamCreate", d.cuStreamCreate(&h, 0), errIllegalAddress)
	check(t, "launch", good.m.launch("hk_init", 1, 1, 0, uint64(0), uint64(0)), errIllegalAddress)
	if _, r, _ := loadModule(d, cudakernels.PTX("trivial")); r != errIllegalAddress {
		t.Errorf("cuModuleLoadDataEx = %d", r)
	}

	// The other context goes on.
	check(t, "cuCtxSetCurrent(other)", d.cuCtxSetCurrent(other), cudaSuccess)
	if status, _ := good.process([][]byte{counterMessage(5, 3)}); status[0] != 0 {
		t.Fatalf("counter_v2 in another context: status %d", status[0])
	}
	check(t, "cuCtxSetCurrent(poisoned)", d.cuCtxSetCurrent(ctx), cudaSuccess)
	check(t, "cuCtxSynchronize", d.cuCtxSynchronize(), errIllegalAddress)
	check(t, "cuCtxDestroy_v2", d.cuCtxDestroy(ctx), cudaSuccess)
	if n := Calls(lib, "cuCtxDestroy_v2"); n != destroys+1 {
		t.Errorf("Calls(cuCtxDestroy_v2) went from %d to %d", destroys, n)
	}
	// The destroyed context was current: other is current again.
	check(t, "cuCtxSynchronize in other", d.cuCtxSynchronize(), cudaSuccess)
}

func TestArgumentsOutsideMemory(t *testing.T) {
	d, lib := load(t)
	lockThread()
	for _, c := range []struct {
		what string
		edit func(b *batch)
	}{
		{"state", func(b *batch) { b.k.stateLen = 8192 }},
		{"off", func(b *batch) { b.count = 1000 }},
		{"res", func(b *batch) { b.res.ptr += 8 }},
		{"out", func(b *batch) { b.out.ptr += 1 }},
		{"in", func(b *batch) { b.in.ptr += 8 }},
	} {
		ctx := newContext(t, d)
		k := newKernel(t, d, lib, "counter_v1", true)
		b := k.prepare([][]byte{counterMessage(1, 1), counterMessage(2, 2)})
		c.edit(b)
		check(t, "launch with "+c.what+" outside memory", b.launch(), cudaSuccess)
		check(t, "cuStreamSynchronize", d.cuStreamSynchronize(k.stream), errIllegalAddress)
		if f := LastFault(lib); !strings.Contains(f, "hk_process of counter_v1: "+c.what+" [") {
			t.Errorf("LastFault = %q, want the %s range named", f, c.what)
		}
		check(t, "cuCtxDestroy_v2", d.cuCtxDestroy(ctx), cudaSuccess)
	}
}

func TestLaunchChecks(t *testing.T) {
	d, lib := load(t)
	lockThread()
	newContext(t, d)
	k := newKernel(t, d, lib, "trivial", true)
	params := []unsafe.Pointer{unsafe.Pointer(&k.state.ptr), unsafe.Pointer(&k.stateLen)}
	f := k.m.fn["hk_init"]
	check(t, "block of 2048 threads", d.cuLaunchKernel(f, 1, 1, 1, 2048, 1, 1, 0, 0, &params[0], nil), errInvalidValue)
	check(t, "empty grid", d.cuLaunchKernel(f, 0, 1, 1, 1, 1, 1, 0, 0, &params[0], nil), errInvalidValue)
	check(t, "no parameters", d.cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, 0, nil, nil), errInvalidValue)
	check(t, "extra", d.cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, 0, &params[0], &params[0]), errNotSupported)
	check(t, "stale function", d.cuLaunchKernel(12345, 1, 1, 1, 1, 1, 1, 0, 0, &params[0], nil), errInvalidHandle)
	check(t, "a 3-D launch", d.cuLaunchKernel(f, 2, 2, 2, 4, 2, 2, 0, 0, &params[0], nil), cudaSuccess)
	check(t, "cuCtxSynchronize", d.cuCtxSynchronize(), cudaSuccess)
}

func TestBindAndCalls(t *testing.T) {
	lib := Build(t)
	err := Bind(lib, []byte("x"), "nope")
	if err == nil || !strings.Contains(err.Error(), `no host implementation "nope"`) || !strings.Contains(err.Error(), "counter_v2_broken") {
		t.Errorf("Bind(unknown) = %v", err)
	}
	if err := Bind(lib, nil, "trivial"); err == nil {
		t.Error("Bind(empty image) succeeded")
	}
	if err := Bind(lib, []byte{0, 0}, "trivial"); err == nil {
		t.Error("Bind(NULs) succeeded")
	}
	if err := Bind(t.TempDir()+"/none.so", []byte("x"), "trivial"); err == nil {
		t.Error("Bind with a missing library succeeded")
	}
	d, _ := load(t)
	before := Calls(lib, "cuDriverGetVersion")
	var v int32
	d.cuDriverGetVersion(&v)
	d.cuDriverGetVersion(nil)
	if got := Calls(lib, "cuDriverGetVersion"); got != before+2 {
		t.Errorf("Calls = %d after two calls from %d", got, before)
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), `no function "cuNothing"`) {
				t.Errorf("Calls(unknown) recovered %v", r)
			}
		}()
		Calls(lib, "cuNothing")
	}()
}

// TestConcurrent runs kernels in several contexts on several threads at
// once.
func TestConcurrent(t *testing.T) {
	d, lib := load(t)
	for g := range 8 {
		t.Run(fmt.Sprint(g), func(t *testing.T) {
			t.Parallel()
			lockThread()
			newContext(t, d)
			k := newKernel(t, d, lib, "counter_v1", true)
			for i := range 20 {
				status, outs := k.process([][]byte{counterMessage(uint32(g), uint64(i))})
				if status[0] != 0 || len(outs) != 1 {
					t.Fatalf("batch %d: status %d", i, status[0])
				}
			}
			if n := binary.LittleEndian.Uint64(k.stateBytes()[24+16*g:]); n != 20 {
				t.Errorf("count %d, want 20", n)
			}
		})
	}
}
