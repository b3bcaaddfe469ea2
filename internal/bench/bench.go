// Package bench measures the reload manager: message throughput, the
// pause of a reload by state size with and without load, and throughput
// while reloading. On the embedded WebAssembly backend (the default) it
// also measures the pause with a small and a large module; on the CUDA
// backend (Options.Backend "cuda") the time the driver takes to load each
// example kernel's module. "hotkernel bench" and the root package's go
// test benchmarks both run these.
package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hotkernel/hotkernel"
	"github.com/hotkernel/hotkernel/backend/cuda"
	"github.com/hotkernel/hotkernel/backend/wasm"
	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/examples/kernels"
	cudakernels "github.com/hotkernel/hotkernel/examples/kernels/cuda"
	"github.com/hotkernel/hotkernel/internal/ptxas"
)

// The backends Options.Backend names.
const (
	// BackendWasm is the embedded WebAssembly backend, on the CPU.
	BackendWasm = "wasm"
	// BackendCUDA is the CUDA backend, on the machine's first NVIDIA GPU
	// (cuda.DefaultConfig: the driver library named by HOTKERNEL_LIBCUDA,
	// else libcuda.so.1).
	BackendCUDA = "cuda"
)

// Options size the measurements.
type Options struct {
	// Duration of each throughput run.
	Duration time.Duration
	// Reloads per pause measurement.
	Reloads int
	// Producers sending messages in the "busy" measurements.
	Producers int
	// Backend is what the kernels run on: BackendWasm (also when empty)
	// or BackendCUDA. Run fails on any other value, and, for BackendCUDA,
	// on a machine without a CUDA driver or device, with an error
	// wrapping cuda.ErrNoDriver or cuda.ErrNoDevice: it never measures
	// another backend instead.
	Backend string
}

// DefaultOptions returns 2 s runs, 200 reloads and 4 producers on the
// WebAssembly backend.
func DefaultOptions() Options {
	return Options{Duration: 2 * time.Second, Reloads: 200, Producers: 4, Backend: BackendWasm}
}

// Kernel returns the example kernel name as a code source. A non-zero
// salt appends a custom section, so that the bytes (and the SHA-256)
// differ and the backend compiles the module anew instead of finding it
// in its cache; the code is the same.
func Kernel(name string, salt uint64) *code.Source {
	b := kernels.Wasm(name)
	if salt != 0 {
		payload := append([]byte{8}, "hk.bench"...)
		payload = binary.LittleEndian.AppendUint64(payload, salt)
		b = append(append(slices.Clip(b), 0, byte(len(payload))), payload...)
	}
	return code.FromWASM(b, "hk_process").WithMetadata("name", name+".wasm")
}

// CUDAKernel returns the PTX of the CUDA example kernel name (one of
// cudakernels.Names) as a code source. A non-zero salt appends the
// comment line "// salt N", so that the bytes (and the SHA-256) differ
// and the module is compiled anew; the code is the same. It panics when
// there is no such kernel, as cudakernels.PTX does.
func CUDAKernel(name string, salt uint64) *code.Source {
	text := string(cudakernels.PTX(name))
	if salt != 0 {
		if text != "" && text[len(text)-1] != '\n' {
			text += "\n"
		}
		text += fmt.Sprintf("// salt %d\n", salt)
	}
	return code.FromPTX(text, "hk_process").WithMetadata("name", name+".ptx")
}

// target is a backend to measure: how to make a Manager on it and how to
// name its kernels.
type target struct {
	name    string
	manager func(ctx context.Context) (*hotkernel.Manager, error)
	kernel  func(name string, salt uint64) *code.Source
}

var (
	wasmTarget = target{name: BackendWasm, manager: manager, kernel: Kernel}
	cudaTarget = target{name: BackendCUDA, manager: cudaManager, kernel: CUDAKernel}
)

// targetOf returns the target Options.Backend names.
func targetOf(name string) (target, error) {
	switch name {
	case "", BackendWasm:
		return wasmTarget, nil
	case BackendCUDA:
		return cudaTarget, nil
	}
	return target{}, fmt.Errorf("bench: unknown backend %q: want %s or %s", name, BackendWasm, BackendCUDA)
}

// managerConfig is the Manager configuration of every measurement: a
// short health window so that reloads can follow each other quickly.
func managerConfig() hotkernel.Config {
	cfg := hotkernel.DefaultConfig()
	cfg.HealthMessages = 64
	cfg.HealthTime = time.Millisecond
	return cfg
}

// manager returns a Manager for measurements on a new WebAssembly
// runtime.
func manager(ctx context.Context) (*hotkernel.Manager, error) {
	rt, err := wasm.NewRuntime(ctx, wasm.DefaultConfig())
	if err != nil {
		return nil, err
	}
	m, err := hotkernel.New(managerConfig(), rt.Backend())
	if err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	return m, nil
}

// openCUDA opens the CUDA backend of cuda.DefaultConfig, saying which
// backend failed when there is no driver or device.
func openCUDA() (*cuda.Backend, error) {
	b, err := cuda.New(cuda.DefaultConfig())
	if err != nil {
		return nil, fmt.Errorf("cuda backend: %w", err)
	}
	return b, nil
}

// cudaManager returns a Manager for measurements on the CUDA backend.
func cudaManager(ctx context.Context) (*hotkernel.Manager, error) {
	b, err := openCUDA()
	if err != nil {
		return nil, err
	}
	m, err := hotkernel.New(managerConfig(), b)
	if err != nil {
		_ = b.Close(ctx)
		return nil, err
	}
	return m, nil
}

// Throughput is a message rate.
type Throughput struct {
	Name      string  `json:"name"`
	Producers int     `json:"producers"`
	Messages  uint64  `json:"messages"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"msgs_per_s"`
	Reloads   int     `json:"reloads,omitempty"`
}

// produce runs producers sending 16-byte messages to k until ctx ends.
func produce(ctx context.Context, k *hotkernel.Kernel, producers int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(0); ctx.Err() == nil; seq++ {
				msg := make([]byte, 16)
				binary.LittleEndian.PutUint32(msg, uint32(p))
				binary.LittleEndian.PutUint64(msg[8:], seq)
				if _, err := k.Send(ctx, msg); err != nil {
					return
				}
			}
		}()
	}
	return &wg
}

// MessageRate measures how many messages per second the kernel handles
// with producers sending as fast as they can for d, while reloadEvery > 0
// reloads it (to the same code under a new salt) at that interval.
// It runs on the WebAssembly backend.
func MessageRate(ctx context.Context, kernel string, producers int, d, reloadEvery time.Duration) (Throughput, error) {
	return messageRate(ctx, wasmTarget, kernel, producers, d, reloadEvery)
}

// messageRate is MessageRate on the backend of tg.
func messageRate(ctx context.Context, tg target, kernel string, producers int, d, reloadEvery time.Duration) (Throughput, error) {
	m, err := tg.manager(ctx)
	if err != nil {
		return Throughput{}, err
	}
	defer m.Close(context.Background())
	k, err := m.Register(ctx, "bench", tg.kernel(kernel, 0), hotkernel.RegisterOptions{})
	if err != nil {
		return Throughput{}, err
	}
	// Compile the variants up front: the reloads then measure swapping,
	// not compiling, and so does the throughput beside them.
	pctx, stop := context.WithCancel(ctx)
	wg := produce(pctx, k, producers)
	time.Sleep(d / 10) // warm up
	start, h0 := time.Now(), k.Handled()
	reloads := 0
	var rerr error
	if reloadEvery > 0 {
		tick := time.NewTicker(reloadEvery)
		for time.Since(start) < d {
			<-tick.C
			if _, err := m.Reload(ctx, "bench", tg.kernel(kernel, uint64(reloads%2+1))); err != nil {
				rerr = err
				break
			}
			reloads++
		}
		tick.Stop()
	} else {
		time.Sleep(d)
	}
	n, el := k.Handled()-h0, time.Since(start)
	stop()
	wg.Wait()
	if rerr != nil {
		return Throughput{}, rerr
	}
	name := kernel
	if reloadEvery > 0 {
		name = fmt.Sprintf("%s, reload every %v", kernel, reloadEvery)
	}
	return Throughput{Name: name, Producers: producers, Messages: n, Seconds: el.Seconds(),
		PerSecond: float64(n) / el.Seconds(), Reloads: reloads}, nil
}

// Pauses are the pauses of a series of reloads.
type Pauses struct {
	Name string `json:"name"`
	// StateBytes is the state the last reload carried over: its
	// Result.CheckpointBytes.
	StateBytes int           `json:"state_bytes"`
	Producers  int           `json:"producers"`
	Reloads    int           `json:"reloads"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	Max        time.Duration `json:"max_ns"`
	// Compile is the median compile time, outside the pause.
	Compile time.Duration `json:"compile_p50_ns"`
}

// Pause reloads kernel a to b and back, n times in all, with producers
// sending meanwhile (0: idle), and reports the pause percentiles. When
// salt is true every reload carries new bytes, so the module is compiled
// each time (outside the pause). It runs on the WebAssembly backend.
func Pause(ctx context.Context, name, a, b string, n, producers int, salt bool) (Pauses, error) {
	return pause(ctx, wasmTarget, name, a, b, n, producers, salt)
}

// pause is Pause on the backend of tg.
func pause(ctx context.Context, tg target, name, a, b string, n, producers int, salt bool) (Pauses, error) {
	m, err := tg.manager(ctx)
	if err != nil {
		return Pauses{}, err
	}
	defer m.Close(context.Background())
	k, err := m.Register(ctx, "bench", tg.kernel(a, 0), hotkernel.RegisterOptions{})
	if err != nil {
		return Pauses{}, err
	}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	wg := produce(pctx, k, producers)
	defer wg.Wait()
	pauses := make([]time.Duration, 0, n)
	compiles := make([]time.Duration, 0, n)
	var state int
	for i := range n {
		next := b
		if i%2 == 1 {
			next = a
		}
		var s uint64
		if salt {
			s = uint64(i + 1)
		}
		res, err := m.Reload(ctx, "bench", tg.kernel(next, s))
		if err != nil {
			return Pauses{}, err
		}
		pauses = append(pauses, res.Pause)
		compiles = append(compiles, res.Compile)
		state = res.CheckpointBytes
	}
	stop()
	slices.Sort(pauses)
	slices.Sort(compiles)
	pct := func(s []time.Duration, p float64) time.Duration { return s[min(len(s)-1, int(float64(len(s))*p))] }
	return Pauses{Name: name, StateBytes: state, Producers: producers, Reloads: n,
		P50: pct(pauses, 0.5), P99: pct(pauses, 0.99), Max: pauses[len(pauses)-1], Compile: pct(compiles, 0.5)}, nil
}

// Report is every measurement of Run.
type Report struct {
	// Backend is what was measured: BackendWasm or BackendCUDA.
	Backend string `json:"backend"`
	// Device describes the GPU for BackendCUDA: its name, architecture
	// and driver version ("NVIDIA H100 80GB HBM3 (sm_90), driver 12040").
	// Empty for BackendWasm.
	Device     string       `json:"device,omitempty"`
	Throughput []Throughput `json:"throughput"`
	Pauses     []Pauses     `json:"pauses"`
	// ReloadRatio is the throughput with 10 reloads per second divided by
	// the throughput without.
	ReloadRatio float64 `json:"reload_throughput_ratio"`
	// ModuleLoads is the load time of every CUDA example kernel, in the
	// order of cudakernels.Names; only for BackendCUDA.
	ModuleLoads []ModuleLoad `json:"module_loads,omitempty"`
}

// stateSize is a state size measured by Run: a counter kernel with that
// much state, and how many of Options.Reloads it gets (all of them when
// divide is 1).
type stateSize struct {
	name, kernel string
	divide       int
}

// Run takes every measurement of o.Backend; progress, when not nil, is
// told each one's name as it starts. For BackendCUDA it opens the device
// first and fails, without measuring anything, when there is none.
func Run(ctx context.Context, o Options, progress func(string)) (*Report, error) {
	tg, err := targetOf(o.Backend)
	if err != nil {
		return nil, err
	}
	say := func(s string) {
		if progress != nil {
			progress(s)
		}
	}
	r := &Report{Backend: tg.name}
	sizes := []stateSize{{"4 KiB", "counter_v1", 1}, {"1 MiB", "counter_v1_1m", 1}, {"16 MiB", "counter_v1_16m", 4}}
	if tg.name == BackendCUDA {
		sizes = []stateSize{{"4 KiB", "counter_v1", 1}, {"1 MiB", "counter_v1_1m", 1}, {"64 MiB", "counter_v1_64m", 4}}
		b, err := openCUDA()
		if err != nil {
			return nil, err
		}
		r.Device = DeviceString(b)
		say("on " + r.Device)
		r.ModuleLoads, err = ModuleLoads(ctx, b, say)
		if cerr := b.Close(context.Background()); err == nil && cerr != nil {
			err = fmt.Errorf("bench: closing the cuda backend: %w", cerr)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, p := range []int{1, o.Producers} {
		say(fmt.Sprintf("throughput, trivial kernel, %d producers", p))
		t, err := messageRate(ctx, tg, "trivial", p, o.Duration, 0)
		if err != nil {
			return nil, err
		}
		r.Throughput = append(r.Throughput, t)
	}
	say("throughput, trivial kernel, 10 reloads/s")
	t, err := messageRate(ctx, tg, "trivial", o.Producers, o.Duration, 100*time.Millisecond)
	if err != nil {
		return nil, err
	}
	r.Throughput = append(r.Throughput, t)
	r.ReloadRatio = t.PerSecond / r.Throughput[1].PerSecond

	for _, s := range sizes {
		for _, p := range []int{0, o.Producers} {
			n := o.Reloads
			if s.divide > 1 {
				n = max(2, n/s.divide)
			}
			label := fmt.Sprintf("state %s, idle", s.name)
			if p > 0 {
				label = fmt.Sprintf("state %s, %d producers", s.name, p)
			}
			say("pause, " + label)
			ps, err := pause(ctx, tg, label, s.kernel, s.kernel, n, p, false)
			if err != nil {
				return nil, err
			}
			r.Pauses = append(r.Pauses, ps)
		}
	}
	if tg.name != BackendWasm {
		return r, nil
	}
	for _, s := range []struct{ name, kernel string }{{"small module (trivial)", "trivial"}, {"2 MB+ module (big)", "big"}} {
		say("pause, " + s.name)
		ps, err := Pause(ctx, s.name+", compiled every reload", s.kernel, s.kernel, max(2, o.Reloads/10), o.Producers, true)
		if err != nil {
			return nil, err
		}
		r.Pauses = append(r.Pauses, ps)
	}
	return r, nil
}

// DeviceString describes the GPU of b in one line: "NVIDIA H100 80GB HBM3
// (sm_90), driver 12040". For a Backend without a device (NewOffline) it
// says so and names the architecture it compiles for.
func DeviceString(b *cuda.Backend) string {
	info, ok := b.Device()
	if !ok {
		return fmt.Sprintf("no device (offline, compiling for %s)", info.Arch)
	}
	return fmt.Sprintf("%s (%s), driver %d", info.Name, info.Arch, info.DriverVersion)
}

// ModuleLoad is how long the CUDA driver took to load the module of one
// example kernel, as (*cuda.Program).LoadTime measures it: the
// cuModuleLoadDataEx call alone, not validation nor reading the ABI
// globals.
type ModuleLoad struct {
	// Kernel is the name, as cudakernels.Names lists it.
	Kernel string `json:"kernel"`
	// PTXBytes is the size of its PTX text.
	PTXBytes int `json:"ptx_bytes"`
	// JIT is the first load of the PTX, compiled by the driver's JIT,
	// with a comment line appended that no earlier load (in this run or
	// an earlier one) had: these exact bytes are new to the driver.
	JIT time.Duration `json:"jit_ns"`
	// JITAgain is the load of those same bytes a second time, which the
	// driver may serve from what it compiled the first time (its compute
	// cache; see cuda.CompilerDriver): the load of a module deployed
	// before, as when a reload goes back to known code.
	JITAgain time.Duration `json:"jit_again_ns"`
	// CUBINArch is the architecture of the CUBIN loaded, the device's;
	// empty when there was no CUBIN to load: none embedded for the
	// device's architecture and no ptxas to assemble one.
	CUBINArch string `json:"cubin_arch,omitempty"`
	// CUBINFrom says where that CUBIN came from: "embedded"
	// (cudakernels.CUBIN) or "ptxas" (the PTX assembled for the device's
	// architecture with the ptxas that ptxas.Find found).
	CUBINFrom string `json:"cubin_from,omitempty"`
	// CUBIN is the load of the CUBIN; 0 when CUBINArch is empty or
	// CUBINError is set.
	CUBIN time.Duration `json:"cubin_ns,omitempty"`
	// CUBINError is why the CUBIN did not load (or could not be
	// assembled), when it did not.
	CUBINError string `json:"cubin_error,omitempty"`
}

// ModuleLoads compiles every CUDA example kernel with b, in the order of
// cudakernels.Names, and reports the driver's load times: the PTX twice
// (new bytes, then the same bytes again), and a CUBIN for the device's
// architecture — the embedded one when cudakernels has it, else one
// assembled with ptxas when ptxas.Find("") finds it, else none. A PTX that
// fails to compile is an error; a CUBIN that fails to load or assemble is
// recorded in its row's CUBINError. progress, when not nil, is told each
// kernel's name as its measurement starts. b must have a device
// (cuda.New): on a Backend made by cuda.NewOffline, which loads nothing,
// ModuleLoads fails with an error wrapping cuda.ErrNoDevice.
func ModuleLoads(ctx context.Context, b *cuda.Backend, progress func(string)) ([]ModuleLoad, error) {
	info, ok := b.Device()
	if !ok {
		return nil, fmt.Errorf("bench: module loads: %w: the backend compiles for %s without a GPU", cuda.ErrNoDevice, info.Arch)
	}
	ptxasPath, ptxasErr := ptxas.Find("")
	run := time.Now().UnixNano()
	var loads []ModuleLoad
	for i, name := range cudakernels.Names() {
		if progress != nil {
			progress("module load, " + name)
		}
		ml := ModuleLoad{Kernel: name, PTXBytes: len(cudakernels.PTX(name))}
		src := CUDAKernel(name, uint64(run)+uint64(i))
		for j, d := range []*time.Duration{&ml.JIT, &ml.JITAgain} {
			p, err := b.CompileProgram(ctx, src)
			if err != nil {
				return nil, fmt.Errorf("bench: loading %s (load %d): %w", name, j+1, err)
			}
			*d = p.LoadTime()
			_ = p.Close(ctx)
		}
		cubin := cudakernels.CUBIN(name, info.Arch)
		switch {
		case cubin != nil:
			ml.CUBINArch, ml.CUBINFrom = info.Arch, "embedded"
		case ptxasErr == nil:
			ml.CUBINArch, ml.CUBINFrom = info.Arch, "ptxas"
			var err error
			cubin, _, err = ptxas.Assemble(ctx, ptxasPath, cudakernels.PTX(name), info.Arch, name+".ptx")
			if err != nil {
				ml.CUBINError = err.Error()
			}
		}
		if cubin != nil && ml.CUBINError == "" {
			src := code.FromCUBIN(cubin, "hk_process").WithMetadata("name", name+"."+info.Arch+".cubin")
			if p, err := b.CompileProgram(ctx, src); err != nil {
				ml.CUBINError = err.Error()
			} else {
				ml.CUBIN = p.LoadTime()
				_ = p.Close(ctx)
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		loads = append(loads, ml)
	}
	return loads, nil
}

// Bytes reports n bytes in KiB or MiB.
func Bytes(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
