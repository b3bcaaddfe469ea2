package wasm

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/hotkernel/hotkernel/code"
)

// Module is a compiled kernel that passed the ABI checks, ready to be
// instantiated any number of times. It is safe for concurrent use.
type Module struct {
	rt       *Runtime
	src      *code.Source
	name     string
	cm       wazero.CompiledModule
	abi      moduleABI
	layout   uint32
	stateLen uint32
	closed   atomic.Bool
}

// Name returns the name used in messages: the Source's "name" metadata,
// or "sha256:" and the first 12 hex digits of its digest.
func (m *Module) Name() string { return m.name }

// Source returns the code the Module was compiled from.
func (m *Module) Source() *code.Source { return m.src }

// StateLayout returns the kernel's state layout version (hk_state_layout),
// learned at compile time.
func (m *Module) StateLayout() uint32 { return m.layout }

// StateLen returns the length of the kernel's state range (hk_state_len)
// in a fresh instance, learned at compile time.
func (m *Module) StateLen() int { return int(m.stateLen) }

// CanMigrate reports whether the kernel exports hk_migrate (and
// hk_scratch), so that it can take state of another layout or length.
func (m *Module) CanMigrate() bool { return m.abi.migrate }

// UsesWASI reports whether the kernel imports WASI preview 1 functions (a
// Go-built kernel does).
func (m *Module) UsesWASI() bool { return m.abi.wasi }

// CheckImport tells, without running anything, whether an instance of m
// can take state of the given layout and length with ImportState: nil
// when the layouts and lengths match (a direct copy) or m exports
// hk_migrate, and otherwise the *ABIError ImportState would return. A
// manager calls it before pausing the old code.
func (m *Module) CheckImport(oldLayout uint32, oldLen int) error {
	return checkImport(m.layout, m.stateLen, m.abi.migrate, oldLayout, oldLen)
}

func checkImport(layout, stateLen uint32, migrate bool, oldLayout uint32, oldLen int) error {
	if oldLayout == layout && oldLen == int(stateLen) || migrate {
		return nil
	}
	if oldLayout != layout {
		return abiErr(fnMigrate, "new code (layout %d) cannot read state of layout %d: it exports no hk_migrate", layout, oldLayout)
	}
	return abiErr(fnMigrate, "new code (layout %d, %d bytes of state) cannot read state of the same layout with %d bytes: it exports no hk_migrate", layout, stateLen, oldLen)
}

// Close releases the compiled code. Instances already created keep
// running until they are closed; Instantiate then fails with ErrClosed.
// Close is idempotent.
func (m *Module) Close(ctx context.Context) error {
	if m.closed.Swap(true) {
		return nil
	}
	return m.cm.Close(ctx)
}

// Instantiate creates a new, independent instance of the kernel with its
// own linear memory: it runs _initialize when the module exports it
// (WASI reactors, such as Go kernels, must run it before anything else),
// checks hk_abi_version, obtains the inbox and outbox (hk_inbox,
// hk_outbox with Config.InboxBytes and OutboxBytes) and checks the state
// range (hk_state_ptr 65536-aligned, inside memory). It does not call
// hk_init: follow with Init for a fresh state, or ImportState to carry
// state over. Each of these calls runs under Config.CallTimeout.
//
// Errors name the module and are an *ABIError, a *TrapError or a
// *DeadError (a kernel stuck in _initialize) from the kernel, or the
// runtime's instantiation error.
func (m *Module) Instantiate(ctx context.Context) (*Instance, error) {
	fail := func(err error) (*Instance, error) { return nil, fmt.Errorf("wasm: instantiate %s: %w", m.name, err) }
	if m.closed.Load() || m.rt.closed.Load() {
		return fail(ErrClosed)
	}
	in := &Instance{m: m, id: m.rt.ids.Add(1), cfg: &m.rt.cfg}
	in.log.init(in)
	// Anonymous, so that instances of one module do not collide; no
	// start functions, so that _initialize runs under a deadline below.
	mc := wazero.NewModuleConfig().WithName("").WithStartFunctions()
	if m.abi.wasi {
		mc = mc.WithStdout(&lineWriter{in: in, source: "stdout"}).
			WithStderr(&lineWriter{in: in, source: "stderr"}).
			WithSysWalltime().WithSysNanotime()
	}
	mod, err := m.rt.r.InstantiateModule(in.hm.prepare(ctx, in.cfg), m.cm, mc)
	if err != nil {
		in.hm.release(0, 0)
		return fail(err)
	}
	in.mod = mod
	if err := in.start(ctx); err != nil {
		_ = mod.Close(ctx)
		in.hm.release(0, 0)
		return fail(err)
	}
	in.hm.bind(in.statePtr, in.stateLen)
	return in, nil
}

// start runs the instance's start sequence (see Instantiate).
func (in *Instance) start(ctx context.Context) error {
	mod := in.mod
	in.mem = mod.ExportedMemory(exportMemory)
	in.fnProcess = mod.ExportedFunction(fnProcess)
	in.fnInit = mod.ExportedFunction(fnInit)
	in.fnStatePtr = mod.ExportedFunction(fnStatePtr)
	in.fnStateLen = mod.ExportedFunction(fnStateLen)
	if in.m.abi.migrate {
		in.fnMigrate = mod.ExportedFunction(fnMigrate)
		in.fnScratch = mod.ExportedFunction(fnScratch)
	}
	if in.m.abi.initialize {
		if _, err := in.call(ctx, mod.ExportedFunction(exportInitialize), exportInitialize, -1, in.cfg.CallTimeout); err != nil {
			return err
		}
	}
	// The shadow-stack pointer of C kernels: every host call starts with
	// the value it has now, so the host puts it back after a trap.
	if g, ok := mod.ExportedGlobal(exportStackPtr).(api.MutableGlobal); ok && g.Type() == i32 {
		in.stackPtr, in.stackPtrInit = g, g.Get()
	}
	version, err := in.query(ctx, mod.ExportedFunction(fnABIVersion), fnABIVersion)
	if err != nil {
		return err
	}
	if int32(version) != ABIVersion {
		return abiErr(fnABIVersion, "ABI %d not supported, this host speaks %d", int32(version), ABIVersion)
	}
	if in.inbox, err = in.buffer(ctx, mod.ExportedFunction(fnInbox), fnInbox, in.cfg.InboxBytes); err != nil {
		return err
	}
	if in.outbox, err = in.buffer(ctx, mod.ExportedFunction(fnOutbox), fnOutbox, in.cfg.OutboxBytes); err != nil {
		return err
	}
	if overlap(in.inbox, in.cfg.InboxBytes, in.outbox, in.cfg.OutboxBytes) {
		return abiErr(fnOutbox, "hk_inbox and hk_outbox returned overlapping buffers (%#x and %#x)", in.inbox, in.outbox)
	}
	in.inboxLen, in.outboxLen = in.cfg.InboxBytes, in.cfg.OutboxBytes
	in.resetOutbox()
	layout, err := in.query(ctx, mod.ExportedFunction(fnStateLayout), fnStateLayout)
	if err != nil {
		return err
	}
	in.layout = layout
	if in.statePtr, in.stateLen, err = in.stateRange(ctx); err != nil {
		return err
	}
	for _, b := range []struct {
		name     string
		ptr, len uint32
	}{{fnInbox, in.inbox, in.inboxLen}, {fnOutbox, in.outbox, in.outboxLen}} {
		if overlap(b.ptr, b.len, in.statePtr, in.stateLen) {
			return abiErr(b.name, "the %s buffer [%#x, +%d) overlaps the state range [%#x, +%d)", b.name, b.ptr, b.len, in.statePtr, in.stateLen)
		}
	}
	return nil
}

// query calls f, the no-argument export name that returns an i32.
func (in *Instance) query(ctx context.Context, f api.Function, name string) (uint32, error) {
	r, err := in.call(ctx, f, name, -1, in.cfg.CallTimeout)
	return uint32(r), err
}

// buffer asks f, the export name (hk_inbox, hk_outbox, hk_scratch), for
// size bytes and checks the pointer it returns.
func (in *Instance) buffer(ctx context.Context, f api.Function, name string, size uint32) (uint32, error) {
	in.stack[0] = uint64(size)
	r, err := in.call(ctx, f, name, -1, in.cfg.CallTimeout)
	if err != nil {
		return 0, err
	}
	ptr := uint32(r)
	if ptr == 0 {
		return 0, abiErr(name, "%s(%d) returned 0: the kernel cannot provide a buffer of that size", name, size)
	}
	if uint64(ptr)+uint64(size) > uint64(in.mem.Size()) {
		return 0, abiErr(name, "%s(%d) returned %#x: the buffer ends past linear memory (%d bytes)", name, size, ptr, in.mem.Size())
	}
	return ptr, nil
}

// stateRange queries and checks hk_state_ptr and hk_state_len.
func (in *Instance) stateRange(ctx context.Context) (ptr, n uint32, err error) {
	if ptr, err = in.query(ctx, in.fnStatePtr, fnStatePtr); err != nil {
		return 0, 0, err
	}
	if n, err = in.query(ctx, in.fnStateLen, fnStateLen); err != nil {
		return 0, 0, err
	}
	if ptr%StateAlign != 0 {
		return 0, 0, abiErr(fnStatePtr, "hk_state_ptr returned %#x, which is not %d-aligned", ptr, StateAlign)
	}
	if uint64(ptr)+uint64(n) > uint64(in.mem.Size()) {
		return 0, 0, abiErr(fnStateLen, "state range [%#x, %#x) ends past linear memory (%d bytes)", ptr, uint64(ptr)+uint64(n), in.mem.Size())
	}
	return ptr, n, nil
}

// overlap reports whether the ranges [a, a+an) and [b, b+bn) share a byte.
func overlap(a, an, b, bn uint32) bool {
	return an > 0 && bn > 0 && uint64(a) < uint64(b)+uint64(bn) && uint64(b) < uint64(a)+uint64(an)
}
