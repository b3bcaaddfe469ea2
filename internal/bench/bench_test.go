package bench_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hotkernel/hotkernel/backend/cuda"
	cudakernels "github.com/hotkernel/hotkernel/examples/kernels/cuda"
	"github.com/hotkernel/hotkernel/internal/bench"
	"github.com/hotkernel/hotkernel/internal/cudafake"
)

// TestRunCUDA runs every CUDA measurement, briefly, on the driver double
// of internal/cudafake: the manager and the backend's host side are the
// real code, the kernels run as host C. It checks that each figure is
// there and plausible, not what it is.
func TestRunCUDA(t *testing.T) {
	lib := cudafake.Build(t)
	if err := cudafake.BindExamples(lib); err != nil {
		t.Fatal(err)
	}
	// The throughput under reloads reloads trivial under salts 1 and 2.
	for _, salt := range []uint64{1, 2} {
		if err := cudafake.Bind(lib, bench.CUDAKernel("trivial", salt).Bytes(), "trivial"); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HOTKERNEL_LIBCUDA", lib)

	o := bench.Options{Duration: 50 * time.Millisecond, Reloads: 2, Producers: 2, Backend: bench.BackendCUDA}
	var said []string
	r, err := bench.Run(context.Background(), o, func(s string) { said = append(said, s) })
	if err != nil {
		t.Fatal(err)
	}
	if r.Backend != bench.BackendCUDA || !strings.Contains(r.Device, "fake") || !strings.Contains(r.Device, "(sm_90), driver 12040") {
		t.Errorf("backend %q, device %q", r.Backend, r.Device)
	}
	if len(said) == 0 || said[0] != "on "+r.Device {
		t.Errorf("progress %q", said)
	}

	if len(r.Throughput) != 3 {
		t.Fatalf("%d throughput rows: %+v", len(r.Throughput), r.Throughput)
	}
	for i, th := range r.Throughput {
		if th.Messages == 0 || th.PerSecond <= 0 {
			t.Errorf("throughput row %d: %+v", i, th)
		}
	}
	if r.Throughput[0].Producers != 1 || r.Throughput[1].Producers != 2 || r.Throughput[2].Reloads < 1 || r.ReloadRatio <= 0 {
		t.Errorf("throughput %+v, ratio %v", r.Throughput, r.ReloadRatio)
	}

	wantPauses := []struct {
		name      string
		state     int
		producers int
	}{
		{"state 4 KiB, idle", 4 << 10, 0}, {"state 4 KiB, 2 producers", 4 << 10, 2},
		{"state 1 MiB, idle", 1 << 20, 0}, {"state 1 MiB, 2 producers", 1 << 20, 2},
		{"state 64 MiB, idle", 64 << 20, 0}, {"state 64 MiB, 2 producers", 64 << 20, 2},
	}
	if len(r.Pauses) != len(wantPauses) {
		t.Fatalf("%d pause rows: %+v", len(r.Pauses), r.Pauses)
	}
	for i, w := range wantPauses {
		p := r.Pauses[i]
		if p.Name != w.name || p.StateBytes != w.state || p.Producers != w.producers || p.Reloads != 2 ||
			p.P50 <= 0 || p.P99 < p.P50 || p.Max < p.P99 {
			t.Errorf("pause row %d: %+v, want %+v", i, p, w)
		}
	}

	names := cudakernels.Names()
	if len(r.ModuleLoads) != len(names) {
		t.Fatalf("%d module load rows for %d kernels", len(r.ModuleLoads), len(names))
	}
	for i, ml := range r.ModuleLoads {
		if ml.Kernel != names[i] || ml.PTXBytes != len(cudakernels.PTX(names[i])) || ml.JIT <= 0 || ml.JITAgain <= 0 {
			t.Errorf("module load row %d: %+v", i, ml)
		}
		// The double runs PTX only: the embedded sm_90 CUBIN is offered
		// and refused, and the refusal is recorded, not fatal.
		if ml.CUBINArch != "sm_90" || ml.CUBINFrom != "embedded" || ml.CUBIN != 0 || !strings.Contains(ml.CUBINError, "PTX text only") {
			t.Errorf("module load row %d, CUBIN: %+v", i, ml)
		}
	}
}

// TestRunCUDANoDriver checks that without a driver library Run fails
// before measuring anything, with an error wrapping cuda.ErrNoDriver.
func TestRunCUDANoDriver(t *testing.T) {
	t.Setenv("HOTKERNEL_LIBCUDA", t.TempDir()+"/libcuda.so.1")
	o := bench.DefaultOptions()
	o.Backend = bench.BackendCUDA
	var said []string
	_, err := bench.Run(context.Background(), o, func(s string) { said = append(said, s) })
	if !errors.Is(err, cuda.ErrNoDriver) || !strings.Contains(err.Error(), "no CUDA driver") {
		t.Errorf("Run: %v, want an error wrapping cuda.ErrNoDriver", err)
	}
	if len(said) != 0 {
		t.Errorf("measured %q without a driver", said)
	}
}

func TestRunUnknownBackend(t *testing.T) {
	o := bench.DefaultOptions()
	o.Backend = "metal"
	if _, err := bench.Run(context.Background(), o, nil); err == nil || !strings.Contains(err.Error(), `unknown backend "metal"`) {
		t.Errorf("Run: %v", err)
	}
}

// TestCUDAKernelSalt checks that a salt changes the bytes, and only by a
// trailing comment line.
func TestCUDAKernelSalt(t *testing.T) {
	plain, salted := bench.CUDAKernel("trivial", 0), bench.CUDAKernel("trivial", 7)
	if string(plain.Bytes()) != string(cudakernels.PTX("trivial")) {
		t.Error("salt 0 changed the PTX")
	}
	if plain.SHA256Hex() == salted.SHA256Hex() {
		t.Error("salt 7 left the SHA-256 as it was")
	}
	rest, ok := strings.CutPrefix(string(salted.Bytes()), string(plain.Bytes()))
	if !ok || strings.TrimPrefix(rest, "\n") != "// salt 7\n" {
		t.Errorf("salted PTX ends %q", rest)
	}
	if name, _ := salted.MetadataValue("name"); name != "trivial.ptx" {
		t.Errorf("name %q", name)
	}
}
