package wasm

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/hotkernel/hotkernel/code"
)

// Runtime compiles and runs WebAssembly kernels on the CPU. It owns one
// wazero runtime with the host module "hk" and WASI preview 1
// instantiated, configured from a Config.
//
// A Runtime is safe for concurrent use: several goroutines may compile
// and instantiate at once, and each Instance may be driven by its own
// goroutine. Close ends everything it holds.
type Runtime struct {
	cfg       Config
	r         wazero.Runtime
	wasiFuncs map[string]api.FunctionDefinition
	ids       atomic.Uint64
	closed    atomic.Bool
}

// NewRuntime returns a Runtime configured by cfg, which must pass
// Validate. Every call into a kernel is interruptible (wazero's
// close-on-context-done), which costs a little per call and lets
// BatchTimeout and CallTimeout stop a kernel that never returns.
func NewRuntime(ctx context.Context, cfg Config) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(cfg.MemoryLimitPages).
		WithCoreFeatures(api.CoreFeaturesV2)
	if cfg.Cache != nil {
		rc = rc.WithCompilationCache(cfg.Cache)
	}
	rt := &Runtime{cfg: cfg, r: wazero.NewRuntimeWithConfig(ctx, rc)}
	if err := rt.instantiateHost(ctx); err != nil {
		_ = rt.r.Close(ctx)
		return nil, fmt.Errorf("wasm: host modules: %w", err)
	}
	return rt, nil
}

// instantiateHost instantiates the "hk" module and WASI preview 1.
func (rt *Runtime) instantiateHost(ctx context.Context) error {
	_, err := rt.r.NewHostModuleBuilder(hostModule).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostFlushFunc), nil, nil).Export(hostFlush).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostLogFunc), []api.ValueType{i32, i32}, nil).Export(hostLog).
		Instantiate(ctx)
	if err != nil {
		return err
	}
	wasi, err := wasi_snapshot_preview1.NewBuilder(rt.r).Compile(ctx)
	if err != nil {
		return err
	}
	if _, err := rt.r.InstantiateModule(ctx, wasi, wazero.NewModuleConfig()); err != nil {
		return err
	}
	rt.wasiFuncs = wasi.ExportedFunctions()
	return nil
}

// Config returns the configuration the Runtime was created with.
func (rt *Runtime) Config() Config { return rt.cfg }

// Close releases the Runtime and everything compiled and instantiated in
// it. Instances still held become dead (their calls fail with a
// *DeadError whose Cause is ErrClosed) and Compile fails with ErrClosed.
// The compilation cache of Config.Cache is left open. Close is idempotent.
func (rt *Runtime) Close(ctx context.Context) error {
	if rt.closed.Swap(true) {
		return nil
	}
	return rt.r.Close(ctx)
}

// Compile checks a kernel and compiles it to machine code, ready to
// instantiate. It is the slow step (milliseconds to seconds for large
// modules) and touches no running instance, so a manager runs it while
// the old code keeps serving.
//
// src must be WebAssembly (code.FormatWASM) with the entry point
// "hk_process" or none. Compile runs, in order: code.Validate (the
// structural check, with src's "name" metadata, if any, as the file
// name); wazero's compilation; the ABI checks on imports and exports,
// their types included; and a probe instantiation that checks
// hk_abi_version, the inbox, outbox and state range as Instantiate does,
// and records the state layout. Every failure names the module, and ABI
// failures are *ABIError naming the export or import, for example
// "kernel ABI: export hk_abi_version missing".
func (rt *Runtime) Compile(ctx context.Context, src *code.Source) (*Module, error) {
	if src == nil {
		return nil, errors.New("wasm: compile: nil source")
	}
	file, _ := src.MetadataValue("name") // for code.Validate; empty: the format's name stands in
	name := file
	if name == "" {
		name = "sha256:" + src.SHA256Hex()[:12]
	}
	fail := func(err error) (*Module, error) { return nil, fmt.Errorf("wasm: compile %s: %w", name, err) }
	if rt.closed.Load() {
		return fail(ErrClosed)
	}
	if src.Format() != code.FormatWASM {
		return fail(fmt.Errorf("%s code is not WebAssembly", src.Format()))
	}
	switch src.Entry() {
	case "":
		src = src.WithEntry(fnProcess)
	case fnProcess:
	default:
		return fail(abiErr(src.Entry(), "entry %q: the entry point of a kernel is %s", src.Entry(), fnProcess))
	}
	if _, err := code.Validate(src, code.Options{Name: file}); err != nil {
		return fail(err)
	}
	cm, err := rt.r.CompileModule(ctx, src.Bytes())
	if err != nil {
		return fail(err)
	}
	abi, err := checkModule(src.Bytes(), cm, rt.wasiFuncs)
	if err != nil {
		_ = cm.Close(ctx)
		return fail(err)
	}
	m := &Module{rt: rt, src: src, name: name, cm: cm, abi: abi}
	probe, err := m.Instantiate(ctx)
	if err != nil {
		_ = cm.Close(ctx)
		return nil, err
	}
	m.layout, m.stateLen = probe.layout, probe.stateLen
	if err := probe.Close(ctx); err != nil {
		_ = cm.Close(ctx)
		return fail(err)
	}
	return m, nil
}

// callCtx is the context of one call into an instance: the caller's
// context with the call's deadline, plus the instance, which the host
// functions find through Value.
type callCtx struct {
	context.Context
	in *Instance
}

type instanceKey struct{}

// Value returns the instance for instanceKey and defers to the parent
// context otherwise.
func (c *callCtx) Value(key any) any {
	if key == (instanceKey{}) {
		return c.in
	}
	return c.Context.Value(key)
}

func instanceOf(ctx context.Context) *Instance {
	in, _ := ctx.Value(instanceKey{}).(*Instance)
	return in
}

// errNoInstance stops a kernel that calls a host function from outside a
// call the host made (from a start function run by the runtime itself).
var errNoInstance = errors.New("host function called outside a host call")

// hostFlushFunc is hk.flush: deliver the outbox content and reset it. A
// malformed outbox, or a panic in the caller's emit function, aborts the
// kernel's call; the instance records why and Process reports it.
func hostFlushFunc(ctx context.Context, _ api.Module, _ []uint64) {
	in := instanceOf(ctx)
	if in == nil {
		panic(errNoInstance)
	}
	in.flushFromKernel()
}

// hostLogFunc is hk.log(ptr, len): one debug line, rate-limited.
func hostLogFunc(ctx context.Context, _ api.Module, stack []uint64) {
	in := instanceOf(ctx)
	if in == nil {
		panic(errNoInstance)
	}
	in.logGuest(api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
}
