package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/examples/kernels"
)

// Commands of the hostile kernel (examples/kernels/c/hostile.c).
const (
	cmdOK = iota
	cmdTrap
	cmdFail
	cmdLoop
	cmdGrow
	cmdOOB
	cmdRecurse
	cmdEmit
	cmdTrapLate
	cmdDeep
)

func hostileMsg(cmd uint32, arg uint32) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, cmd)
	binary.LittleEndian.PutUint32(b[4:], arg)
	return b
}

func hostileMsgs(cmds ...uint32) [][]byte {
	msgs := make([][]byte, len(cmds))
	for i, c := range cmds {
		arg := uint32(0)
		if c == cmdFail {
			arg = 7
		}
		msgs[i] = hostileMsg(c, arg)
	}
	return msgs
}

// hostileState is the hostile kernel's state: ok messages, pages reached
// by the memory bomb, writes made by trap-late messages.
func hostileState(in *Instance) (ok, pages, late uint64) {
	b := in.StateView()
	return le64(b), le64(b[8:]), le64(b[16:])
}

func firstErr(r ProcessResult) error {
	if len(r.Failures) == 0 {
		return nil
	}
	return r.Failures[0].Err
}

// TestTrapInBatch: a message that traps or fails is reported and the
// instance goes on with the next message, in the same call to Process and
// in later ones.
func TestTrapInBatch(t *testing.T) {
	ctx := context.Background()
	// The runtime's stack overflow (cmdDeep) first grows the call stack
	// to its ceiling, which can take a while on a busy machine.
	in := newInstance(t, newRuntime(t, func(c *Config) { c.BatchTimeout = 20 * time.Second }), "hostile")
	msgs := hostileMsgs(cmdOK, cmdOK, cmdTrap, cmdOK, cmdFail, cmdOK, cmdOOB, cmdOK, cmdRecurse, cmdOK, cmdTrapLate, cmdOK, cmdDeep, cmdOK)
	var outs [][]byte
	res, err := in.Process(ctx, msgs, collect(&outs))
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		index int
		trap  string // trap message, or "" for a kernel error code 7
	}
	wants := []want{{2, "wasm error: unreachable"}, {4, ""}, {6, "wasm error: out of bounds memory access"},
		{8, "wasm error: out of bounds memory access"}, {10, "wasm error: unreachable"}, {12, "stack overflow"}}
	if res.Processed != len(msgs) || len(res.Failures) != len(wants) || succeeded(res) != 8 {
		t.Fatalf("result %+v", res)
	}
	for i, w := range wants {
		f := res.Failures[i]
		if f.Index != w.index {
			t.Errorf("failure %d at message %d, want %d", i, f.Index, w.index)
		}
		if w.trap == "" {
			var ke *KernelError
			if !errors.As(f.Err, &ke) || ke.Code != 7 || ke.Index != w.index {
				t.Errorf("failure %d: %v, want code 7", i, f.Err)
			}
			continue
		}
		var te *TrapError
		if !errors.As(f.Err, &te) || !strings.Contains(te.Message, w.trap) || te.Index != w.index || te.Func != fnProcess {
			t.Errorf("failure %d: %v, want a trap %q", i, f.Err, w.trap)
		}
	}
	// Outputs: the 8 ok messages echoed, and the output the trap-late
	// message wrote before trapping, in order.
	if len(outs) != 9 || res.Outputs != 9 || !bytes.Equal(outs[6], msgs[10]) || !bytes.Equal(outs[7], msgs[11]) {
		t.Errorf("outputs %x", outs)
	}
	// Writes before a trap stay.
	if ok, _, late := hostileState(in); ok != 8 || late != 1 {
		t.Errorf("state: ok %d, late writes %d; want 8, 1", ok, late)
	}
	// The C stack pointer is back where it starts.
	if in.stackPtr == nil || in.stackPtr.Get() != in.stackPtrInit {
		t.Errorf("__stack_pointer not restored")
	}
	if in.Err() != nil {
		t.Fatal(in.Err())
	}
	// Many traps later the instance still works: each C stack overflow
	// starts again from the top of the stack.
	for i := range 50 {
		cmds := []uint32{cmdRecurse, cmdOK, cmdTrap}
		if i%10 == 0 {
			cmds = append(cmds, cmdDeep)
		}
		if res, err := in.Process(ctx, hostileMsgs(cmds...), nil); err != nil || len(res.Failures) != len(cmds)-1 {
			t.Fatalf("%+v, %v", res, err)
		}
	}
	if ok, _, _ := hostileState(in); ok != 58 {
		t.Errorf("ok %d, want 58", ok)
	}
}

// TestTrapLeavesStackPointer shows, on the bare runtime, why the host
// resets __stack_pointer: a trap leaves the C shadow stack where the
// trapping frame put it.
func TestTrapLeavesStackPointer(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	_, err := r.NewHostModuleBuilder("hk").NewFunctionBuilder().WithFunc(func() {}).Export("flush").Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := r.InstantiateWithConfig(ctx, kernels.Wasm("hostile"), wazero.NewModuleConfig().WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	sp := mod.ExportedGlobal("__stack_pointer")
	before := sp.Get()
	inbox, err := mod.ExportedFunction(fnInbox).Call(ctx, 4096)
	if err != nil {
		t.Fatal(err)
	}
	// A batch of one message {count 1, done 0}[len 8][recurse].
	frame := append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0}, hostileMsg(cmdRecurse, 0)...)
	mod.Memory().Write(uint32(inbox[0]), frame)
	if _, err := mod.ExportedFunction(fnProcess).Call(ctx, 1); err == nil || !strings.Contains(err.Error(), "out of bounds") {
		t.Fatalf("recursion: %v", err)
	}
	if mod.IsClosed() {
		t.Fatal("a trap closed the module")
	}
	// The stack is first in memory: the overflow took the pointer below 0.
	if after := int32(sp.Get()); after >= int32(before) {
		t.Errorf("__stack_pointer %d after the trap, %d before: expected it lower", after, before)
	}
	// The module is usable after a trap.
	if v, err := mod.ExportedFunction(fnABIVersion).Call(ctx); err != nil || v[0] != 1 {
		t.Errorf("after the trap: %v, %v", v, err)
	}
}

func TestTrapEveryMessage(t *testing.T) {
	in := newInstance(t, newRuntime(t, nil), "hostile_trap_all")
	res, err := in.Process(context.Background(), hostileMsgs(make([]uint32, 300)...), nil)
	if err != nil || res.Processed != 300 || len(res.Failures) != 300 || succeeded(res) != 0 {
		t.Fatalf("%d failures, processed %d, %v", len(res.Failures), res.Processed, err)
	}
	for i, f := range res.Failures {
		var te *TrapError
		if f.Index != i || !errors.As(f.Err, &te) {
			t.Fatalf("failure %d: %+v", i, f)
		}
	}
	if in.Err() != nil {
		t.Error(in.Err())
	}
}

// TestDeadline: a kernel stuck in a loop is interrupted at BatchTimeout;
// the instance is dead, says how far it got, and its state can be carried
// to a new instance.
func TestDeadline(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t, func(c *Config) { c.BatchTimeout = 100 * time.Millisecond })
	in := newInstance(t, rt, "hostile")
	msgs := hostileMsgs(cmdOK, cmdOK, cmdLoop, cmdOK)
	var outs [][]byte
	res, err := in.Process(ctx, msgs, collect(&outs))
	var de *DeadError
	if !errors.As(err, &de) || !errors.Is(err, ErrInstanceDead) || !errors.Is(err, ErrDeadline) {
		t.Fatalf("error %v, want a deadline DeadError", err)
	}
	if de.Index != 2 || de.Func != fnProcess {
		t.Errorf("DeadError %+v", de)
	}
	if res.Processed != 3 || len(res.Failures) != 1 || res.Failures[0].Index != 2 || res.Failures[0].Err != error(de) || res.Outputs != 2 {
		t.Errorf("result %+v", res)
	}
	if len(outs) != 2 {
		t.Errorf("%d outputs, want the 2 of the messages before the loop", len(outs))
	}
	if in.Err() != error(de) {
		t.Errorf("Err() = %v", in.Err())
	}
	// Dead: everything that runs code fails the same way, nothing is
	// attempted.
	if r2, err := in.Process(ctx, msgs, nil); err != error(de) || r2.Processed != 0 {
		t.Errorf("Process on a dead instance: %+v, %v", r2, err)
	}
	if err := in.Init(ctx); err != error(de) {
		t.Errorf("Init on a dead instance: %v", err)
	}
	// The state is still readable, and carries over.
	state := in.ExportState()
	if ok, _, _ := hostileState(in); ok != 2 || state == nil {
		t.Fatalf("dead state: ok %d", ok)
	}
	fresh, err := in.Module().Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(ctx)
	if err := fresh.ImportState(ctx, in.StateLayout(), 1, state); err != nil {
		t.Fatal(err)
	}
	if res, err := fresh.Process(ctx, msgs[3:], nil); err != nil || succeeded(res) != 1 {
		t.Fatalf("%+v, %v", res, err)
	}
	if ok, _, _ := hostileState(fresh); ok != 3 {
		t.Errorf("ok %d after recovery, want 3", ok)
	}
	if err := in.Close(ctx); err != nil {
		t.Error(err)
	}
}

func TestCallerContext(t *testing.T) {
	rt := newRuntime(t, func(c *Config) { c.BatchTimeout = 10 * time.Second })
	in := newInstance(t, rt, "hostile")
	// Done before the first call: nothing runs, the instance lives.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := in.Process(done, hostileMsgs(cmdOK), nil)
	if !errors.Is(err, context.Canceled) || res.Processed != 0 || in.Err() != nil {
		t.Fatalf("%+v, %v, %v", res, err, in.Err())
	}
	// Done during a call: the kernel is interrupted and the instance dies.
	ctx, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	res, err = in.Process(ctx, hostileMsgs(cmdOK, cmdLoop), nil)
	if !errors.Is(err, ErrInstanceDead) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrDeadline) {
		t.Fatalf("error %v", err)
	}
	if res.Processed != 2 || succeeded(res) != 1 {
		t.Errorf("result %+v", res)
	}
}

func TestMemoryBomb(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t, func(c *Config) { c.MemoryLimitPages = 64 })
	in := newInstance(t, rt, "hostile")
	res, err := in.Process(ctx, hostileMsgs(cmdOK, cmdGrow, cmdOK), nil)
	if err != nil {
		t.Fatal(err)
	}
	var ke *KernelError
	if len(res.Failures) != 1 || !errors.As(firstErr(res), &ke) || ke.Code != 12 || ke.Index != 1 {
		t.Fatalf("result %+v", res)
	}
	if ok, pages, _ := hostileState(in); ok != 2 || pages != 64 {
		t.Errorf("ok %d, pages reached %d; want 2, 64", ok, pages)
	}
	if in.mem.Size() != 64*65536 {
		t.Errorf("memory %d bytes", in.mem.Size())
	}
	// A module that needs more than the cap from the start does not
	// compile.
	if _, err := rt.Compile(ctx, source("counter_v1_16m")); err == nil || !strings.Contains(err.Error(), "over limit") {
		t.Errorf("16 MiB state under a 4 MiB cap: %v", err)
	}
}

func TestEmitPanics(t *testing.T) {
	for _, tc := range []struct {
		name   string
		outbox uint32
	}{{"in flush", 64}, {"after the call", 64 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			in := newInstance(t, newRuntime(t, func(c *Config) { c.OutboxBytes = tc.outbox }), "counter_v1")
			n := 0
			func() {
				defer func() {
					if r := recover(); r != "emit failed" {
						t.Errorf("recovered %v", r)
					}
				}()
				_, _ = in.Process(context.Background(), counterMsgs(10, 1, 0), func([]byte) {
					if n++; n == 3 {
						panic("emit failed")
					}
				})
				t.Error("Process returned")
			}()
			if !errors.Is(in.Err(), ErrInstanceDead) {
				t.Errorf("Err() = %v", in.Err())
			}
		})
	}
}

// TestOutboxViolations: a kernel that corrupts its outbox header, or
// returns a positive value from hk_process, is dead with an ABIError.
func TestOutboxViolations(t *testing.T) {
	i2i := fnType{params: []byte{tI32}, results: []byte{tI32}}
	corrupt := i32Store(8192, 0x7fffffff)
	cases := []struct {
		name      string
		bend      func(m *genModule)
		processed int
		index     int
		want      string
	}{
		{"used too big", func(m *genModule) { m.def(fnProcess, i2i, append(corrupt, i32Const(0)...)) },
			2, -1, "outbox used count 2147483647 exceeds its capacity 2040"},
		{"flush with bad frame", func(m *genModule) {
			m.imports = []genImport{{module: "hk", name: "flush", typ: fnType{}}}
			body := append(i32Store(8192, 8), i32Store(8200, 1000)...)
			body = append(body, 0x10, 0x00) // call hk.flush
			m.def(fnProcess, i2i, append(body, i32Const(0)...))
		}, 1, 0, "outbox frame at offset 0 claims 1000 bytes"},
		{"positive result", func(m *genModule) { m.def(fnProcess, i2i, i32Const(5)) },
			1, 0, "hk_process returned 5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rt := newRuntime(t, abiTestConfig)
			g := minimalKernel()
			c.bend(g)
			m, err := rt.Compile(context.Background(), code.FromWASM(g.bytes(), ""))
			if err != nil {
				t.Fatal(err)
			}
			in, err := m.Instantiate(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close(context.Background())
			res, err := in.Process(context.Background(), [][]byte{{1}, {2}}, nil)
			var de *DeadError
			if !errors.As(err, &de) || !errors.Is(err, ErrABI) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want a DeadError with an ABIError %q", err, c.want)
			}
			if res.Processed != c.processed || de.Index != c.index {
				t.Errorf("result %+v, DeadError %+v", res, de)
			}
		})
	}
}

func TestLogRateLimit(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	rt := newRuntime(t, func(c *Config) {
		abiTestConfig(c)
		c.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
		c.LogLinesPerSecond = 10
	})
	g := minimalKernel()
	g.imports = []genImport{{module: "hk", name: "log", typ: fnType{params: []byte{tI32, tI32}}}}
	var body []byte
	body = append(body, i32Store(100, 0x6f6c6568)...) // "helo"
	for range 50 {
		body = append(body, i32Const(100)...)
		body = append(body, i32Const(4)...)
		body = append(body, 0x10, 0x00) // call hk.log
	}
	g.def(fnProcess, fnType{params: []byte{tI32}, results: []byte{tI32}}, append(body, i32Const(0)...))
	m, err := rt.Compile(context.Background(), code.FromWASM(g.bytes(), ""))
	if err != nil {
		t.Fatal(err)
	}
	in, err := m.Instantiate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(context.Background())
	if _, err := in.Process(context.Background(), [][]byte{{1}}, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "msg=helo"); n < 1 || n > 20 {
		t.Errorf("%d lines logged of 50, limit 10 a second:\n%s", n, logs.String())
	}
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t, nil)
	in := newInstance(t, rt, "counter_v1")
	other := newInstance(t, rt, "counter_v1")
	if err := in.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(ctx); err != nil {
		t.Error(err)
	}
	if _, err := in.Process(ctx, counterMsgs(1, 1, 0), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Process after Close: %v", err)
	}
	if in.StateView() != nil || in.ExportState() != nil {
		t.Error("state after Close")
	}
	m := other.Module()
	if err := rt.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := other.Process(ctx, counterMsgs(1, 1, 0), nil)
	if !errors.Is(err, ErrInstanceDead) || !errors.Is(err, ErrClosed) {
		t.Errorf("Process after Runtime.Close: %v", err)
	}
	if _, err := m.Instantiate(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Instantiate after Runtime.Close: %v", err)
	}
	if _, err := rt.Compile(ctx, source("trivial")); !errors.Is(err, ErrClosed) {
		t.Errorf("Compile after Runtime.Close: %v", err)
	}
}

// TestGoReactorNeedsInitialize shows, on the bare runtime, that a Go
// wasip1 reactor must run _initialize before its exports: without it the
// Go runtime is not set up and the exports trap or return garbage.
func TestGoReactorNeedsInitialize(t *testing.T) {
	ctx := context.Background()
	// The configuration NewRuntime uses, so that testCache has the code.
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(testCache).
		WithCloseOnContextDone(true).WithMemoryLimitPages(DefaultConfig().MemoryLimitPages).WithCoreFeatures(api.CoreFeaturesV2))
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	_, err := r.NewHostModuleBuilder("hk").
		NewFunctionBuilder().WithFunc(func() {}).Export("flush").
		NewFunctionBuilder().WithFunc(func(uint32, uint32) {}).Export("log").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := r.CompileModule(ctx, kernels.Wasm("counter_go"))
	if err != nil {
		t.Fatal(err)
	}
	call := func(mod api.Module, name string) (uint64, error) {
		res, err := mod.ExportedFunction(name).Call(ctx)
		if err != nil {
			return 0, err
		}
		return res[0], nil
	}
	bare, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call(bare, fnABIVersion); err == nil || !strings.Contains(err.Error(), "notInitialized") {
		t.Errorf("hk_abi_version before _initialize: %v, want a trap in runtime.notInitialized", err)
	}
	inited, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions(exportInitialize))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := call(inited, fnABIVersion); err != nil || v != 1 {
		t.Errorf("hk_abi_version after _initialize: %d, %v", v, err)
	}
	if v, err := call(inited, fnStatePtr); err != nil || v == 0 || v%StateAlign != 0 {
		t.Errorf("hk_state_ptr after _initialize: %#x, %v", v, err)
	}
}
