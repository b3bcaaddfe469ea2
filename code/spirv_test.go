package code_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotkernel/hotkernel/code"
)

// spvInst encodes one SPIR-V instruction.
func spvInst(op uint32, operands ...uint32) []uint32 {
	return append([]uint32{uint32(len(operands)+1)<<16 | op}, operands...)
}

// spvStr encodes a literal string: nul-terminated, padded to a word.
func spvStr(s string) []uint32 {
	b := append([]byte(s), 0)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	w := make([]uint32, len(b)/4)
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return w
}

// spvModule encodes a little-endian module of SPIR-V 1.5 with the given
// id bound.
func spvModule(bound uint32, insts ...[]uint32) []byte {
	words := []uint32{0x07230203, 0x00010500, 0, bound, 0}
	for _, in := range insts {
		words = append(words, in...)
	}
	return spvBytes(binary.LittleEndian, words)
}

func spvBytes(bo binary.ByteOrder, words []uint32) []byte {
	b := make([]byte, 4*len(words))
	for i, w := range words {
		bo.PutUint32(b[4*i:], w)
	}
	return b
}

// spvCompute returns the instructions of a minimal GLCompute module with
// entry point name on function %1, plus extra instructions before the
// types.
func spvCompute(name string, extra ...[]uint32) [][]uint32 {
	insts := [][]uint32{
		spvInst(17, 1),    // OpCapability Shader
		spvInst(14, 0, 1), // OpMemoryModel Logical GLSL450
		spvInst(15, append([]uint32{5, 1}, spvStr(name)...)...), // OpEntryPoint GLCompute %1 name
	}
	insts = append(insts, extra...)
	return append(insts,
		spvInst(19, 2),          // %2 = OpTypeVoid
		spvInst(33, 3, 2),       // %3 = OpTypeFunction %2
		spvInst(54, 2, 1, 0, 3), // %1 = OpFunction %2 None %3
		spvInst(248, 4),         // %4 = OpLabel
		spvInst(253),            // OpReturn
		spvInst(56),             // OpFunctionEnd
	)
}

// spvLocalSize is OpExecutionMode %1 LocalSize x y z.
func spvLocalSize(x, y, z uint32) []uint32 { return spvInst(16, 1, 17, x, y, z) }

// spvSwap returns the module b with every word's bytes reversed.
func spvSwap(b []byte) []byte {
	out := make([]byte, len(b))
	for i := 0; i+4 <= len(b); i += 4 {
		binary.BigEndian.PutUint32(out[i:], binary.LittleEndian.Uint32(b[i:]))
	}
	return out
}

func TestSPIRVTestdata(t *testing.T) {
	tests := []struct {
		file    string
		version string
		entries string // name:kind, ...
		others  string
	}{
		{"vadd.spv", "1.5", "main:GLCompute", ""},
		// LocalSize 1 1 1 overridden by the WorkgroupSize spec constant.
		{"scale.spv", "1.0", "main:GLCompute", ""},
		{"kernels.spv", "1.2", "saxpy:Kernel,fill:Kernel", ""},
		{"mixed.spv", "1.5", "clear:GLCompute", "vs:Vertex,fs:Fragment"},
	}
	list := func(es []code.Entry) string {
		s := make([]string, len(es))
		for i, e := range es {
			s[i] = e.Name + ":" + e.Kind
		}
		return strings.Join(s, ",")
	}
	for _, tt := range tests {
		for _, order := range []string{"little-endian", "big-endian"} {
			t.Run(tt.file+" "+order, func(t *testing.T) {
				b := binaryTestdata(t, "spirv", tt.file)
				if order == "big-endian" {
					b = spvSwap(b)
				}
				if f := code.FormatFromContent(b); f != code.FormatSPIRV {
					t.Errorf("FormatFromContent = %v", f)
				}
				info, err := code.Inspect(code.FormatSPIRV, b, code.Options{Name: tt.file})
				if err != nil {
					t.Fatal(err)
				}
				if info.Version != tt.version {
					t.Errorf("Version = %q, want %q", info.Version, tt.version)
				}
				if got := list(info.Entries); got != tt.entries {
					t.Errorf("Entries = %s, want %s", got, tt.entries)
				}
				if got := list(info.Others); got != tt.others {
					t.Errorf("Others = %s, want %s", got, tt.others)
				}
				bo := binary.ByteOrder(binary.LittleEndian)
				if order == "big-endian" {
					bo = binary.BigEndian
				}
				for _, e := range append(info.Entries, info.Others...) {
					if !e.HasOffset || e.Offset%4 != 0 || e.Offset >= int64(len(b)) || bo.Uint32(b[e.Offset:])&0xffff != 15 {
						t.Errorf("entry %+v: offset is not an OpEntryPoint", e)
					}
				}
			})
		}
	}
}

func TestSPIRVNotCompute(t *testing.T) {
	for _, tt := range []struct{ file, kind string }{
		{"tri.vert.spv", "Vertex"},
		{"tri.frag.spv", "Fragment"},
	} {
		b := binaryTestdata(t, "spirv", tt.file)
		info, err := code.Inspect(code.FormatSPIRV, b, code.Options{Name: tt.file})
		wantBinaryErr(t, err, code.ErrNoEntries, -1, "no compute entry point (only "+tt.kind+" main)")
		if info != nil {
			t.Errorf("info %+v with error", info)
		}
		_, err = code.Validate(code.FromSPIRV(b, "main"), code.Options{Name: tt.file})
		e := wantBinaryErr(t, err, code.ErrEntryNotFound, -1, `entry "main" is a `+tt.kind+` entry point, not a compute entry point`)
		if !e.HasOffset {
			t.Errorf("%s: error has no offset", tt.file)
		}
	}

	b := binaryTestdata(t, "spirv", "mixed.spv")
	if _, err := code.Validate(code.FromSPIRV(b, "clear"), code.Options{}); err != nil {
		t.Error(err)
	}
	_, err := code.Validate(code.FromSPIRV(b, "fs"), code.Options{Name: "mixed.spv"})
	wantBinaryErr(t, err, code.ErrEntryNotFound, -1, `entry "fs" is a Fragment entry point`)
	_, err = code.Validate(code.FromSPIRV(b, "nope"), code.Options{Name: "mixed.spv"})
	e := wantBinaryErr(t, err, code.ErrEntryNotFound, -1, `entry "nope" not found; entries: clear`)
	if !strings.HasPrefix(e.Error(), "mixed.spv: byte ") {
		t.Errorf("message %q", e)
	}

	k := binaryTestdata(t, "spirv", "kernels.spv")
	_, err = code.Validate(code.FromSPIRV(k, "madd"), code.Options{Name: "kernels.spv"})
	wantBinaryErr(t, err, code.ErrEntryNotFound, -1, `entry "madd" not found; entries: saxpy, fill`)
}

func TestSPIRVBuilderIsValid(t *testing.T) {
	b := spvModule(5, spvCompute("main", spvLocalSize(8, 8, 1))...)
	info, err := code.Inspect(code.FormatSPIRV, b, code.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Entries) != 1 || info.Entries[0].Name != "main" || info.Entries[0].Offset != 40 {
		t.Errorf("entries %+v", info.Entries)
	}
	// Names that fill their words exactly still need a nul word after.
	b = spvModule(5, spvCompute("abcd", spvLocalSize(8, 8, 1))...)
	if info, err := code.Inspect(code.FormatSPIRV, b, code.Options{}); err != nil || info.Entries[0].Name != "abcd" {
		t.Errorf("name of 4 bytes: %v, %v", info, err)
	}
}

func TestSPIRVMalformed(t *testing.T) {
	vadd := binaryTestdata(t, "spirv", "vadd.spv")
	le := binary.LittleEndian
	patch := func(b []byte, f func(b []byte)) []byte {
		b = bytes.Clone(b)
		f(b)
		return b
	}
	ok := spvCompute("main", spvLocalSize(8, 8, 1))
	entryOff := int64(20 + 2*4 + 3*4) // after the header, OpCapability and OpMemoryModel
	modeOff := entryOff + 4*int64(len(ok[2]))

	tests := []struct {
		name   string
		b      []byte
		off    int64
		substr string
	}{
		{"bad magic", patch(vadd, func(b []byte) { b[0] = 0 }), 0, "bad magic number"},
		{"length not a multiple of 4", append(bytes.Clone(vadd), 0, 0), int64(len(vadd)), "not a multiple of 4"},
		{"truncated header", vadd[:12], 12, "truncated header"},
		{"too short", vadd[:3], 0, "truncated module: 3 bytes"},
		{"version 1.7", patch(vadd, func(b []byte) { le.PutUint32(b[4:], 0x00010700) }), 4, "unknown version word 0x00010700"},
		{"version 2.0", patch(vadd, func(b []byte) { le.PutUint32(b[4:], 0x00020000) }), 4, "unknown version"},
		{"version low byte", patch(vadd, func(b []byte) { le.PutUint32(b[4:], 0x00010501) }), 4, "unknown version"},
		{"bound 0", patch(vadd, func(b []byte) { le.PutUint32(b[12:], 0) }), 12, "id bound is 0"},
		{"schema", patch(vadd, func(b []byte) { le.PutUint32(b[16:], 1) }), 16, "schema word is 1"},
		{"zero word count", patch(vadd, func(b []byte) { le.PutUint32(b[20:], 17) }), 20, "word count 0"},
		{"word count past the end", patch(vadd, func(b []byte) { le.PutUint32(b[20:], 0xffff0011) }), 20, "runs past the end of the module"},
		{"truncated instruction", spvModule(5, spvInst(17, 1), []uint32{4<<16 | 14, 0}), 28, "word count 4 runs past the end of the module (2 words left)"},
		{"result id at the bound", spvModule(4, ok...), -1, "result id 4 is outside the id bound 4"},
		{"result type id out of bound", spvModule(5, spvCompute("main", spvLocalSize(1, 1, 1), spvInst(43, 9, 4))...), -1, "result type id 9 is outside the id bound 5"},
		{"result id 0", spvModule(5, spvCompute("main", spvLocalSize(1, 1, 1), spvInst(19, 0))...), -1, "result id 0 is outside"},
		{"result id defined twice", spvModule(5, spvCompute("main", spvLocalSize(1, 1, 1), spvInst(19, 2))...), -1, "result id 2 is already defined"},
		{"no room for result", spvModule(5, spvCompute("main", spvLocalSize(1, 1, 1), spvInst(43, 2))...), -1, "leaves no room for its result type and result id"},
		{"entry function id out of bound", spvModule(5, spvInst(15, append([]uint32{5, 7}, spvStr("main")...)...)), 20, "OpEntryPoint: function id 7 is outside the id bound 5"},
		{"entry interface id out of bound", spvModule(5, spvInst(15, append(append([]uint32{5, 1}, spvStr("main")...), 6)...)), 20, "interface id 6 is outside the id bound 5"},
		{"entry name unterminated", spvModule(5, spvInst(15, 5, 1, 0x6e69616d)), 20, "not nul-terminated"},
		{"entry name not UTF-8", spvModule(5, spvInst(15, 5, 1, 0x00ff_ffff)), 20, "not valid UTF-8"},
		{"entry point too short", spvModule(5, spvInst(15, 5, 1)), 20, "word count 3 is too small"},
		{"entry is not a function", spvModule(5, spvInst(15, append([]uint32{5, 2}, spvStr("main")...)...), spvInst(19, 2)), 20, "names id 2, which is not an OpFunction"},
		{"duplicate entry", spvModule(5, append(spvCompute("main", spvLocalSize(1, 1, 1)), spvInst(15, append([]uint32{5, 1}, spvStr("main")...)...))...), -1, `a GLCompute entry point named "main" is already declared at byte 40`},
		{"missing LocalSize", spvModule(5, spvCompute("main")...), entryOff, `GLCompute entry point "main" has no LocalSize or LocalSizeId execution mode`},
		{"only a LocalSizeHint", spvModule(5, spvCompute("main", spvInst(16, 1, 18, 64, 1, 1))...), entryOff, `entry point "main" has no LocalSize`},
		{"LocalSize with a zero", spvModule(5, spvCompute("main", spvLocalSize(64, 0, 1))...), modeOff, "LocalSize 64 0 1"},
		{"LocalSize too short", spvModule(5, spvCompute("main", spvInst(16, 1, 17, 64))...), modeOff, "word count 4, want 6"},
		{"LocalSizeId id out of bound", spvModule(5, spvCompute("main", spvInst(331, 1, 38, 2, 2, 8))...), modeOff, "LocalSizeId size id 8 is outside the id bound 5"},
		{"execution mode id out of bound", spvModule(5, spvCompute("main", spvInst(16, 6, 17, 1, 1, 1))...), modeOff, "OpExecutionMode: entry point id 6 is outside the id bound 5"},
		{"execution mode for no entry point", spvModule(5, spvCompute("main", spvLocalSize(1, 1, 1), spvInst(16, 2, 17, 1, 1, 1))...), modeOff + 24, "no OpEntryPoint declares"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := code.Inspect(code.FormatSPIRV, tt.b, code.Options{Name: "bad.spv"})
			wantBinaryErr(t, err, code.ErrMalformed, tt.off, tt.substr)
			// The same fault in a big-endian module is found at the same place.
			if len(tt.b) >= 4 && len(tt.b)%4 == 0 && binary.LittleEndian.Uint32(tt.b) == 0x07230203 {
				_, err := code.Inspect(code.FormatSPIRV, spvSwap(tt.b), code.Options{Name: "bad.spv"})
				wantBinaryErr(t, err, code.ErrMalformed, tt.off, tt.substr)
			}
		})
	}
}

func TestSPIRVWorkgroupSizeBuiltIn(t *testing.T) {
	// OpDecorate %5 BuiltIn WorkgroupSize stands in for LocalSize.
	b := spvModule(6, spvCompute("main", spvInst(71, 5, 11, 25))...)
	if _, err := code.Inspect(code.FormatSPIRV, b, code.Options{}); err != nil {
		t.Error(err)
	}
	// LocalSizeId through OpExecutionModeId.
	b = spvModule(5, spvCompute("main", spvInst(331, 1, 38, 2, 2, 2))...)
	if _, err := code.Inspect(code.FormatSPIRV, b, code.Options{}); err != nil {
		t.Error(err)
	}
}

func FuzzSPIRV(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "spirv", "*.spv"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(spvSwap(b))
	}
	f.Add(spvModule(5, spvCompute("main", spvLocalSize(8, 8, 1))...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		info, err := code.Inspect(code.FormatSPIRV, b, code.Options{})
		checkFuzzResult(t, info, err)
	})
}
