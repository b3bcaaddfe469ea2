package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hotkernel/hotkernel/internal/bench"
	"github.com/hotkernel/hotkernel/internal/cudafake"
)

// TestBenchCUDA runs "bench --json --backend cuda" on the driver double
// of internal/cudafake and prints its report as the table.
func TestBenchCUDA(t *testing.T) {
	lib := cudafake.Build(t)
	if err := cudafake.BindExamples(lib); err != nil {
		t.Fatal(err)
	}
	for _, salt := range []uint64{1, 2} { // the throughput under reloads
		if err := cudafake.Bind(lib, bench.CUDAKernel("trivial", salt).Bytes(), "trivial"); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HOTKERNEL_LIBCUDA", lib)
	args := []string{"bench", "--backend", "cuda", "--duration", "20ms", "--reloads", "2", "--producers", "1"}

	code, out, stderr := runCLI(t, append(args, "--json")...)
	if code != exitOK {
		t.Fatalf("bench --json exit %d\n%s", code, stderr)
	}
	var r bench.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	if r.Backend != "cuda" || !strings.Contains(r.Device, "fake") || len(r.Throughput) != 3 || len(r.Pauses) != 6 || len(r.ModuleLoads) == 0 {
		t.Errorf("report %+v", r)
	}

	// The table of the same report.
	var table strings.Builder
	printReport(&table, &r)
	for _, want := range []string{"device: hotkernel fake GPU (sm_90), driver 12040", "THROUGHPUT", "CHECKPOINT",
		"state 64 MiB, 1 producers", "64 MiB\n", "MODULE LOAD", "counter_v2_broken", " KiB ", "sm_90, embedded: failed"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("bench table lacks %q:\n%s", want, table.String())
		}
	}
	for _, unwanted := range []string{"TARGET", "met"} {
		if strings.Contains(table.String(), unwanted) {
			t.Errorf("bench table has %q, a WebAssembly target:\n%s", unwanted, table.String())
		}
	}
}

// TestBenchCUDANoDriver checks that without a CUDA driver "bench
// --backend cuda" says so and exits 1, and that an unknown backend is a
// usage error.
func TestBenchCUDANoDriver(t *testing.T) {
	t.Setenv("HOTKERNEL_LIBCUDA", t.TempDir()+"/libcuda.so.1")
	code, out, stderr := runCLI(t, "bench", "--backend", "cuda")
	if code != exitFailure || out != "" || !strings.Contains(stderr, "hotkernel bench: cuda backend: no CUDA driver") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	code, _, stderr = runCLI(t, "bench", "--backend", "metal")
	if code != exitUsage || !strings.Contains(stderr, `--backend "metal": want wasm or cuda`) {
		t.Errorf("--backend metal: exit %d, stderr %q", code, stderr)
	}
}
