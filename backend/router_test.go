package backend_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hotkernel/hotkernel/backend"
	"github.com/hotkernel/hotkernel/backend/wasm"
	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/examples/kernels"
)

func TestRouter(t *testing.T) {
	ctx := context.Background()
	rt, err := wasm.NewRuntime(ctx, wasm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	r := backend.NewRouter()
	r.Handle(code.FormatWASM, rt.Backend())
	noGPU := errors.New("no CUDA driver")
	r.Unavailable(code.FormatPTX, noGPU)
	if r.Name() != "wasm" {
		t.Errorf("Name = %q", r.Name())
	}
	p, err := r.Compile(ctx, code.FromWASM(kernels.Wasm("trivial"), "hk_process"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = r.Compile(ctx, code.FromPTX(".version 7.0\n.target sm_80\n.address_size 64\n.visible .entry hk_process() { ret; }\n", "hk_process"))
	if !errors.Is(err, noGPU) || !strings.Contains(err.Error(), "ptx code cannot run here") {
		t.Errorf("PTX without its backend: %v", err)
	}
	_, err = r.Compile(ctx, code.FromWGSL("@compute @workgroup_size(1) fn main() {}", "main"))
	if err == nil || !strings.Contains(err.Error(), "no backend runs wgsl") || !strings.Contains(err.Error(), "wasm") {
		t.Errorf("WGSL: %v", err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Compile(ctx, code.FromWASM(kernels.Wasm("trivial"), "hk_process")); err == nil {
		t.Error("Compile after Close succeeded")
	}
}
