package wasm

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/examples/kernels"
)

// testCache is shared by the tests' runtimes, so that each example kernel
// is compiled to machine code once per test binary: compiling the large
// ones is slow under the race detector.
var testCache = wazero.NewCompilationCache()

// newRuntime returns a Runtime with the default Config, sharing
// testCache, changed by mutate; it is closed when the test ends.
func newRuntime(tb testing.TB, mutate func(*Config)) *Runtime {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.Cache = testCache
	if mutate != nil {
		mutate(&cfg)
	}
	rt, err := NewRuntime(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}

// source returns the example kernel called name as a Source.
func source(name string) *code.Source {
	return code.FromWASM(kernels.Wasm(name), "").WithMetadata("name", name)
}

// compile compiles the example kernel called name.
func compile(tb testing.TB, rt *Runtime, name string) *Module {
	tb.Helper()
	m, err := rt.Compile(context.Background(), source(name))
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// newInstance compiles and instantiates the example kernel called name,
// with a fresh state.
func newInstance(tb testing.TB, rt *Runtime, name string) *Instance {
	tb.Helper()
	in, err := compile(tb, rt, name).Instantiate(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	if err := in.Init(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = in.Close(context.Background()) })
	return in
}

// succeeded returns the number of messages that completed successfully.
func succeeded(r ProcessResult) int { return r.Processed - len(r.Failures) }
