package wasm

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/examples/kernels"
)

// abiTestConfig fits minimalKernel's buffers.
func abiTestConfig(c *Config) {
	c.InboxBytes = 2048
	c.OutboxBytes = 2048
}

func TestMinimalKernelCompiles(t *testing.T) {
	rt := newRuntime(t, abiTestConfig)
	m, err := rt.Compile(context.Background(), code.FromWASM(minimalKernel().bytes(), fnProcess))
	if err != nil {
		t.Fatal(err)
	}
	if m.StateLayout() != 1 || m.StateLen() != 16 || m.CanMigrate() || m.UsesWASI() {
		t.Errorf("layout %d, len %d, migrate %v, wasi %v; want 1, 16, false, false", m.StateLayout(), m.StateLen(), m.CanMigrate(), m.UsesWASI())
	}
}

func TestABIChecks(t *testing.T) {
	get := fnType{results: []byte{tI32}}
	i2i := fnType{params: []byte{tI32}, results: []byte{tI32}}
	cases := []struct {
		name   string
		bend   func(m *genModule)
		abi    string // the ABIError's Name; empty when the error is not an ABIError
		substr string
	}{
		{"missing version", func(m *genModule) { m.drop(fnABIVersion) }, fnABIVersion,
			"kernel ABI: export hk_abi_version missing"},
		{"version 2", func(m *genModule) { m.def(fnABIVersion, get, i32Const(2)) }, fnABIVersion,
			"kernel ABI: ABI 2 not supported, this host speaks 1"},
		// code.Validate finds this one first: hk_process is the entry point.
		{"missing process", func(m *genModule) { m.drop(fnProcess) }, "",
			`entry "hk_process" not found`},
		{"missing state layout", func(m *genModule) { m.drop(fnStateLayout) }, fnStateLayout,
			"export hk_state_layout missing"},
		{"process returns i64", func(m *genModule) {
			m.def(fnProcess, fnType{params: []byte{tI32}, results: []byte{tI64}}, []byte{0x42, 0})
		}, fnProcess, "export hk_process has type (i32) -> i64, want (i32) -> i32"},
		{"inbox takes no size", func(m *genModule) { m.def(fnInbox, get, i32Const(4096)) }, fnInbox,
			"export hk_inbox has type () -> i32, want (i32) -> i32"},
		{"migrate wrong type", func(m *genModule) {
			m.def(fnScratch, i2i, i32Const(4096))
			m.def(fnMigrate, fnType{params: []byte{tI32, tI32, tI32, tI32}, results: []byte{tI32}}, i32Const(0))
		}, fnMigrate, "export hk_migrate has type (i32, i32, i32, i32) -> i32, want (i32, i64, i32, i32) -> i32"},
		{"migrate without scratch", func(m *genModule) {
			m.def(fnMigrate, fnType{params: []byte{tI32, tI64, tI32, tI32}, results: []byte{tI32}}, i32Const(0))
		}, fnScratch, "export hk_scratch missing"},
		{"initialize returns", func(m *genModule) { m.def(exportInitialize, get, i32Const(0)) }, exportInitialize,
			"export _initialize has type () -> i32, want () -> ()"},
		{"command", func(m *genModule) { m.def(exportStart, fnType{}, nil) }, exportStart,
			"the module is a WASI command"},
		{"no memory export", func(m *genModule) { m.noMemory = true }, exportMemory,
			"export memory missing"},
		{"unknown import", func(m *genModule) {
			m.imports = append(m.imports, genImport{module: "env", name: "foo", typ: fnType{}})
		}, "env.foo", "kernel ABI: import env.foo not allowed"},
		{"unknown hk import", func(m *genModule) {
			m.imports = append(m.imports, genImport{module: "hk", name: "sleep", typ: fnType{}})
		}, "hk.sleep", "import hk.sleep not provided"},
		{"flush with a parameter", func(m *genModule) {
			m.imports = append(m.imports, genImport{module: "hk", name: "flush", typ: fnType{params: []byte{tI32}}})
		}, "hk.flush", "import hk.flush has type (i32) -> (), want () -> ()"},
		{"unknown wasi import", func(m *genModule) {
			m.imports = append(m.imports, genImport{module: wasiModule, name: "teleport", typ: fnType{}})
		}, "wasi_snapshot_preview1.teleport", "no such WASI preview 1 function"},
		{"wasi import wrong type", func(m *genModule) {
			m.imports = append(m.imports, genImport{module: wasiModule, name: "proc_exit", typ: fnType{}})
		}, "wasi_snapshot_preview1.proc_exit", "import wasi_snapshot_preview1.proc_exit has type () -> (), want (i32) -> ()"},
		{"imported memory", func(m *genModule) {
			m.imports = append(m.imports, genImport{module: "env", name: "memory", kind: 2})
			m.noMemory = true
		}, "env.memory", "import of memory env.memory not allowed"},
		{"imported global", func(m *genModule) {
			m.imports = append(m.imports, genImport{module: "env", name: "g", kind: 3})
		}, "env.g", "import of global env.g not allowed"},
		{"unaligned state", func(m *genModule) { m.def(fnStatePtr, get, i32Const(65536+16)) }, fnStatePtr,
			"hk_state_ptr returned 0x10010, which is not 65536-aligned"},
		{"state past memory", func(m *genModule) { m.def(fnStateLen, get, i32Const(65537)) }, fnStateLen,
			"ends past linear memory"},
		{"inbox null", func(m *genModule) { m.def(fnInbox, i2i, i32Const(0)) }, fnInbox,
			"hk_inbox(2048) returned 0"},
		{"outbox past memory", func(m *genModule) { m.def(fnOutbox, i2i, i32Const(131072-100)) }, fnOutbox,
			"hk_outbox(2048) returned 0x1ff9c: the buffer ends past linear memory"},
		{"inbox overlaps outbox", func(m *genModule) { m.def(fnInbox, i2i, i32Const(8192+1024)) }, fnOutbox,
			"overlapping buffers"},
		{"inbox overlaps state", func(m *genModule) { m.def(fnInbox, i2i, i32Const(65536-8)) }, fnInbox,
			"overlaps the state range"},
		{"version traps", func(m *genModule) { m.def(fnABIVersion, get, []byte{0x00}) }, "",
			"kernel: hk_abi_version trapped: wasm error: unreachable"},
		{"memory over limit", func(m *genModule) { m.memPages = 5000 }, "",
			"over limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rt := newRuntime(t, abiTestConfig)
			m := minimalKernel()
			c.bend(m)
			_, err := rt.Compile(context.Background(), code.FromWASM(m.bytes(), fnProcess).WithMetadata("name", "bent.wasm"))
			if err == nil {
				t.Fatal("compiled")
			}
			if !strings.Contains(err.Error(), c.substr) || !strings.Contains(err.Error(), "bent.wasm") {
				t.Errorf("error %q\nwant it to name bent.wasm and contain %q", err, c.substr)
			}
			var ae *ABIError
			switch {
			case c.abi == "" && errors.As(err, &ae):
				t.Errorf("got an ABIError %+v", ae)
			case c.abi != "" && !errors.As(err, &ae):
				t.Errorf("not an ABIError: %v", err)
			case c.abi != "" && ae.Name != c.abi:
				t.Errorf("ABIError names %q, want %q", ae.Name, c.abi)
			case c.abi != "" && !errors.Is(err, ErrABI):
				t.Error("errors.Is(err, ErrABI) is false")
			}
		})
	}
}

func TestCompileRejectsSources(t *testing.T) {
	rt := newRuntime(t, abiTestConfig)
	ctx := context.Background()
	good := minimalKernel().bytes()
	if _, err := rt.Compile(ctx, nil); err == nil {
		t.Error("nil source compiled")
	}
	if _, err := rt.Compile(ctx, code.FromPTX(".version 7.8", "k")); err == nil || !strings.Contains(err.Error(), "ptx code is not WebAssembly") {
		t.Errorf("PTX: %v", err)
	}
	var ae *ABIError
	if _, err := rt.Compile(ctx, code.FromWASM(good, "main")); !errors.As(err, &ae) || ae.Name != "main" {
		t.Errorf("entry main: %v", err)
	}
	if _, err := rt.Compile(ctx, code.FromWASM(good[:len(good)-3], "")); !errors.Is(err, code.ErrMalformed) {
		t.Errorf("truncated module: %v, want code.ErrMalformed", err)
	}
	if _, err := rt.Compile(ctx, code.FromWASM(good, "")); err != nil {
		t.Errorf("empty entry: %v", err)
	}
}

// TestCompileExamples compiles every example kernel and checks what
// Compile learned about it.
func TestCompileExamples(t *testing.T) {
	rt := newRuntime(t, nil)
	want := map[string]struct {
		layout  uint32
		len     int
		migrate bool
		wasi    bool
	}{
		"big":               {1, 24, false, false},
		"counter_go":        {1, 4096, true, true},
		"counter_v1":        {1, 4096, true, false},
		"counter_v1_1m":     {1, 1 << 20, true, false},
		"counter_v1_16m":    {1, 16 << 20, true, false},
		"counter_v2":        {2, 4096, true, false},
		"counter_v2_1m":     {2, 1 << 20, true, false},
		"counter_v2_16m":    {2, 16 << 20, true, false},
		"counter_v2_broken": {2, 4096, true, false},
		"hostile":           {1, 24, false, false},
		"hostile_trap_all":  {1, 24, false, false},
		"trivial":           {1, 16, false, false},
	}
	names := kernels.Names()
	if len(names) != len(want) {
		t.Errorf("example kernels %v, want %d", names, len(want))
	}
	for _, name := range names {
		m := compile(t, rt, name)
		w := want[name]
		if m.StateLayout() != w.layout || m.StateLen() != w.len || m.CanMigrate() != w.migrate || m.UsesWASI() != w.wasi {
			t.Errorf("%s: layout %d, len %d, migrate %v, wasi %v; want %+v", name, m.StateLayout(), m.StateLen(), m.CanMigrate(), m.UsesWASI(), w)
		}
		if m.Name() != name || m.Source() == nil {
			t.Errorf("%s: Name %q", name, m.Name())
		}
	}
	if n := len(kernels.Wasm("big")); n < 2<<20 {
		t.Errorf("big.wasm is %d bytes, want at least 2 MiB", n)
	}
}

func TestScanImports(t *testing.T) {
	m := minimalKernel()
	m.imports = []genImport{
		{module: "hk", name: "flush", typ: fnType{}},
		{module: "env", name: "memory", kind: 2},
		{module: "env", name: "g", kind: 3},
	}
	got, err := scanImports(m.bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := []importEntry{{"hk", "flush", externFunc}, {"env", "memory", externMemory}, {"env", "g", externGlobal}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("import %d: got %v, want %v", i, got[i], want[i])
		}
	}
	if _, err := scanImports([]byte("\x00asm\x01\x00\x00\x00\x02\x05")); err == nil {
		t.Error("truncated import section scanned")
	}
}

// FuzzScanImports checks that scanImports never panics, and agrees with
// the function imports of valid modules.
func FuzzScanImports(f *testing.F) {
	f.Add(minimalKernel().bytes())
	f.Add(kernels.Wasm("counter_v1"))
	m := minimalKernel()
	m.imports = []genImport{{module: "env", name: "memory", kind: 2}, {module: "a", name: "b", typ: fnType{params: []byte{tI32}}}}
	f.Add(m.bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = scanImports(b)
	})
}
