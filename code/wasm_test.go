package code_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotkernel/hotkernel/code"
)

// wasmLEB encodes v as unsigned LEB128.
func wasmLEB(v uint32) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

// wasmSec encodes a section.
func wasmSec(id byte, content ...[]byte) []byte {
	c := bytes.Join(content, nil)
	return append(append([]byte{id}, wasmLEB(uint32(len(c)))...), c...)
}

// wasmMod encodes a module from its sections.
func wasmMod(sections ...[]byte) []byte {
	return append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Join(sections, nil)...)
}

// wasmName encodes a name.
func wasmName(s string) []byte { return append(wasmLEB(uint32(len(s))), s...) }

// wasmOneFunc returns the sections of a module with one function of type
// () -> () and body code, exported as "f", plus extra sections at the end.
func wasmOneFunc(body []byte, extra ...[]byte) []byte {
	return wasmMod(append([][]byte{
		wasmSec(1, []byte{1, 0x60, 0, 0}),
		wasmSec(3, []byte{1, 0}),
		wasmSec(7, []byte{1}, wasmName("f"), []byte{0, 0}),
		wasmSec(10, []byte{1}, wasmLEB(uint32(len(body))), body),
	}, extra...)...)
}

func TestWASMTestdata(t *testing.T) {
	b := binaryTestdata(t, "wasm", "kernel.wasm")
	if f := code.FormatFromContent(b); f != code.FormatWASM {
		t.Errorf("FormatFromContent = %v", f)
	}
	info, err := code.Inspect(code.FormatWASM, b, code.Options{Name: "kernel.wasm"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != "1" {
		t.Errorf("Version = %q", info.Version)
	}
	// Declaration order, not name order; the memory and the global are
	// exports but not functions.
	if got := strings.Join(info.EntryNames(), ","); got != "saxpy,dot,fill" {
		t.Errorf("entries %s, want saxpy,dot,fill", got)
	}
	for _, e := range info.Entries {
		n := int(e.Offset)
		if e.Kind != "function" || !e.HasOffset || n+1+len(e.Name) > len(b) ||
			int(b[n]) != len(e.Name) || string(b[n+1:n+1+len(e.Name)]) != e.Name {
			t.Errorf("entry %+v: want a function whose offset is its export entry", e)
		}
	}
	if len(info.Others) != 0 {
		t.Errorf("Others = %v", info.Others)
	}

	if _, err := code.Validate(code.FromWASM(b, "dot"), code.Options{}); err != nil {
		t.Error(err)
	}
	for _, entry := range []string{"clamp", "memory", "lanes"} {
		_, err := code.Validate(code.FromWASM(b, entry), code.Options{Name: "kernel.wasm"})
		e := wantBinaryErr(t, err, code.ErrEntryNotFound, info.Entries[0].Offset, `entry "`+entry+`" not found; entries: saxpy, dot, fill`)
		if !strings.HasPrefix(e.Error(), "kernel.wasm: byte ") {
			t.Errorf("message %q", e)
		}
	}
}

func TestWASMFeatures(t *testing.T) {
	// Every section, the element and data segment forms, shared memory,
	// atomics, SIMD, reference types and a name section.
	info, err := code.Inspect(code.FormatWASM, binaryTestdata(t, "wasm", "features.wasm"), code.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(info.EntryNames(), ","); got != "add,split,bump,init" {
		t.Errorf("entries %s, want add,split,bump,init", got)
	}
}

func TestWASMStartNotRun(t *testing.T) {
	// The start function traps; compiling must not run it.
	info, err := code.Inspect(code.FormatWASM, binaryTestdata(t, "wasm", "start.wasm"), code.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(info.EntryNames(), ","); got != "run" {
		t.Errorf("entries %s, want run", got)
	}
	// A start function that never returns.
	loop := wasmMod(
		wasmSec(1, []byte{1, 0x60, 0, 0}),
		wasmSec(3, []byte{1, 0}),
		wasmSec(7, []byte{1}, wasmName("spin"), []byte{0, 0}),
		wasmSec(8, []byte{0}),
		wasmSec(10, []byte{1, 7, 0, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b}), // loop br 0 end
	)
	done := make(chan error, 1)
	go func() {
		_, err := code.Inspect(code.FormatWASM, loop, code.Options{})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Inspect ran the start function")
	}
}

func TestWASMInvalid(t *testing.T) {
	b := binaryTestdata(t, "wasm", "invalid.wasm")
	// The one function body ends the file: its size byte (10) and 10 bytes.
	body := len(b) - 11
	_, err := code.Inspect(code.FormatWASM, b, code.Options{Name: "invalid.wasm"})
	e := wantBinaryErr(t, err, code.ErrMalformed, int64(body), "cannot use f32 as result[0] type i32")
	if !strings.Contains(e.Reason, `export["half"]`) {
		t.Errorf("reason %q does not name the function", e.Reason)
	}
}

func TestWASMMalformed(t *testing.T) {
	good := binaryTestdata(t, "wasm", "kernel.wasm")
	valid := wasmOneFunc([]byte{0, 0x0b})
	if _, err := code.Inspect(code.FormatWASM, valid, code.Options{}); err != nil {
		t.Fatalf("builder module: %v", err)
	}
	n := int64(len(valid))
	mismatch := wasmOneFunc([]byte{0, 0x41, 1, 0x0b}) // body: size, no locals, i32.const 1, end
	tests := []struct {
		name   string
		b      []byte
		off    int64
		substr string
	}{
		{"bad magic", []byte("\x00ASM\x01\x00\x00\x00"), 0, "bad magic number"},
		{"not wasm", []byte("hello"), 0, "bad magic number"},
		{"truncated header", good[:6], 6, "truncated header"},
		{"version 2", []byte("\x00asm\x02\x00\x00\x00"), 4, "unsupported binary version 2"},
		{"component", []byte("\x00asm\x0d\x00\x01\x00"), 4, "component"},
		{"truncated", good[:len(good)-1], -1, "runs past the end of the file"},
		{"truncated in a section header", good[:9], 9, "unexpected end of data reading section size"},
		{"unknown section id", append(bytes.Clone(valid), 20, 0), n, "unknown section id 20"},
		{"section out of order", append(bytes.Clone(valid), wasmSec(1, []byte{0})...), n, "type section is out of order or repeated"},
		{"section repeated", wasmOneFunc([]byte{0, 0x0b}, wasmSec(10, []byte{0})), n, "code section is out of order"},
		{"section size past the end", append(bytes.Clone(valid), 0, 9, 1, 'x'), n, "custom section: size 9 runs past the end of the file"},
		{"section longer than its content", wasmMod(wasmSec(1, []byte{0, 0})), 11, "type section: its content ends at byte 11, but its size says byte 12"},
		{"custom section name too long", append(bytes.Clone(valid), 0, 2, 5, 'x'), n + 2, "custom section name: length 5 runs past the end"},
		{"custom section name not UTF-8", append(bytes.Clone(valid), 0, 3, 1, 0xff, 0), n + 3, "not valid UTF-8"},
		{"huge type count", wasmMod(wasmSec(1, []byte{0xff, 0xff, 0xff, 0xff, 0x0f})), 10, "type count 4294967295 cannot fit"},
		{"LEB too long", wasmMod(wasmSec(1, []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00})), 10, "integer representation too long"},
		{"LEB too large", wasmMod(wasmSec(1, []byte{0xff, 0xff, 0xff, 0xff, 0x1f})), 10, "integer too large"},
		{"huge parameter count", wasmMod(wasmSec(1, []byte{1, 0x60, 0xff, 0xff, 0xff, 0xff, 0x0f, 0})), 12, "parameter count 4294967295 cannot fit"},
		{"bad type form", wasmMod(wasmSec(1, []byte{1, 0x61, 0, 0})), 11, "invalid form 0x61"},
		{"huge local count", wasmOneFunc([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f, 0x0b}), -1, "declares more than 50000 locals"},
		{"too many locals in all", wasmMod(
			wasmSec(1, []byte{1, 0x60, 0, 0}),
			wasmSec(3, []byte{2, 0, 0}),
			wasmSec(10, []byte{2}, []byte{6, 1, 0xc0, 0xb8, 0x02, 0x7f, 0x0b}, []byte{6, 1, 0xc0, 0xb8, 0x02, 0x7f, 0x0b}), // 40000 i32 locals each
		), -1, "function body 1: the module declares more than"},
		{"body size past the section", wasmMod(wasmSec(1, []byte{1, 0x60, 0, 0}), wasmSec(3, []byte{1, 0}), wasmSec(10, []byte{1, 0x7f, 0, 0x0b})), -1, "function body 0: size 127 does not fit"},
		{"huge data segment", wasmMod(wasmSec(5, []byte{1, 0, 1}), wasmSec(11, []byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})), -1, "data segment byte count 4294967295 cannot fit"},
		{"bad constant expression", wasmMod(wasmSec(6, []byte{1, 0x7f, 0, 0x20, 0, 0x0b})), 13, "instruction 0x20 is not allowed in a constant expression"},
		{"bad limits", wasmMod(wasmSec(5, []byte{1, 9, 1})), 11, "invalid flags 0x09"},
		{"bad import kind", wasmMod(wasmSec(2, []byte{1}, wasmName("m"), wasmName("n"), []byte{7, 0})), 15, "import 0: invalid kind 0x07"},
		// Faults only the full decoder or validator finds.
		{"function without a body", wasmMod(wasmSec(1, []byte{1, 0x60, 0, 0}), wasmSec(3, []byte{1, 0})), 14, "function and code section have inconsistent lengths"},
		{"export of a missing function", wasmMod(wasmSec(7, []byte{1}, wasmName("f"), []byte{0, 3})), 8, `invalid module: unknown function for export["f"]`},
		{"type mismatch", mismatch, int64(len(mismatch) - 5), "invalid function[0] export[\"f\"]: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := code.Inspect(code.FormatWASM, tt.b, code.Options{Name: "bad.wasm"})
			wantBinaryErr(t, err, code.ErrMalformed, tt.off, tt.substr)
		})
	}

	// Memory limits that wazero rejects, placed at the memory section.
	mem := wasmMod(wasmSec(5, []byte{1, 1, 2, 1}))
	_, err := code.Inspect(code.FormatWASM, mem, code.Options{})
	wantBinaryErr(t, err, code.ErrMalformed, 8, "section memory:")
}

func TestWASMNoFunctionExports(t *testing.T) {
	for _, b := range [][]byte{
		wasmMod(),
		wasmMod(wasmSec(5, []byte{1, 0, 1}), wasmSec(7, []byte{1}, wasmName("memory"), []byte{2, 0})),
	} {
		_, err := code.Inspect(code.FormatWASM, b, code.Options{Name: "empty.wasm"})
		wantBinaryErr(t, err, code.ErrNoEntries, -1, "no compute entry point")
	}
}

func TestWASMCustomSections(t *testing.T) {
	// A name section that claims four billion function names, and another
	// custom section: neither carries semantics, neither is decoded.
	hostile := wasmSec(0, wasmName("name"), []byte{1, 5, 0xff, 0xff, 0xff, 0xff, 0x0f})
	other := wasmSec(0, wasmName("producers"), []byte("anything"))
	b := wasmOneFunc([]byte{0, 0x0b}, hostile, other)
	info, err := code.Inspect(code.FormatWASM, b, code.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Entries) != 1 || info.Entries[0].Name != "f" {
		t.Errorf("entries %+v", info.Entries)
	}
	// Offsets stay those of the file with its custom sections.
	b = wasmMod(
		other,
		wasmSec(1, []byte{1, 0x60, 0, 0}),
		wasmSec(3, []byte{1, 0}),
		wasmSec(10, []byte{1, 3, 0, 0x41, 0x0b}),
	)
	_, err = code.Inspect(code.FormatWASM, b, code.Options{})
	wantBinaryErr(t, err, code.ErrMalformed, int64(len(b)-4), "invalid function[0]")
}

func TestWASMConcurrent(t *testing.T) {
	b := binaryTestdata(t, "wasm", "kernel.wasm")
	bad := binaryTestdata(t, "wasm", "invalid.wasm")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if _, err := code.Inspect(code.FormatWASM, b, code.Options{}); err != nil {
					t.Error(err)
					return
				}
				if _, err := code.Inspect(code.FormatWASM, bad, code.Options{}); err == nil {
					t.Error("invalid module accepted")
					return
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzWASM(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "wasm", "*.wasm"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(wasmOneFunc([]byte{0, 0x0b}))
	f.Add(wasmMod(wasmSec(5, []byte{1, 0, 1}), wasmSec(11, []byte{1, 0, 0x41, 0, 0x0b, 2, 'h', 'i'})))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		info, err := code.Inspect(code.FormatWASM, b, code.Options{})
		checkFuzzResult(t, info, err)
	})
}
