package code_test

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotkernel/hotkernel/code"
)

// wantBinaryErr checks that err is an *Error of the given kind whose
// reason contains substr and, when off >= 0, that sits at byte off. The
// tests of all binary formats use it.
func wantBinaryErr(t *testing.T, err error, kind error, off int64, substr string) *code.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v containing %q", kind, substr)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %q is not %v", err, kind)
	}
	var e *code.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %q (%T) is not a *code.Error", err, err)
	}
	if !strings.Contains(e.Reason, substr) {
		t.Errorf("reason %q does not contain %q", e.Reason, substr)
	}
	if off >= 0 && (!e.HasOffset || e.Offset != off) {
		t.Errorf("error %q: place (offset %d, has %v), want byte %d", err, e.Offset, e.HasOffset, off)
	}
	return e
}

// binaryTestdata reads a file under testdata.
func binaryTestdata(t testing.TB, path ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"testdata"}, path...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cubinParse parses the CUBIN b with debug/elf, which wants EV_CURRENT
// where CUDA writes its own e_version.
func cubinParse(t *testing.T, b []byte) *elf.File {
	t.Helper()
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// cubinSymbolOffsets returns the file offset of each symbol table entry
// of the ELF64 file b, by symbol name.
func cubinSymbolOffsets(t *testing.T, b []byte) map[string]int {
	t.Helper()
	f := cubinParse(t, b)
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var symtab *elf.Section
	for _, s := range f.Sections {
		if s.Type == elf.SHT_SYMTAB {
			symtab = s
		}
	}
	offs := make(map[string]int)
	for i, s := range syms {
		// Symbols() leaves out entry 0.
		offs[s.Name] = int(symtab.Offset) + (i+1)*elf.Sym64Size
	}
	return offs
}

// cubinClearEntryFlags clears STO_CUDA_ENTRY on every symbol of b.
func cubinClearEntryFlags(t *testing.T, b []byte) []byte {
	t.Helper()
	b = bytes.Clone(b)
	for _, off := range cubinSymbolOffsets(t, b) {
		b[off+5] &^= 0x10 // st_other
	}
	return b
}

func TestCUBINTestdata(t *testing.T) {
	tests := []struct {
		file    string
		arch    string
		entries []string
	}{
		// ptxas writes kernels in the reverse of their PTX order; the
		// symbol table order is the order reported.
		{"vadd.sm_52.cubin", "sm_52", []string{"vscale", "vadd"}},
		{"vadd.sm_80.cubin", "sm_80", []string{"vscale", "vadd"}},
		{"vadd.sm_90.cubin", "sm_90", []string{"vscale", "vadd"}},
		{"reduce.sm_52.cubin", "sm_52", []string{"block_sum"}},
		{"reduce.sm_80.cubin", "sm_80", []string{"block_sum"}},
		{"reduce.sm_90.cubin", "sm_90", []string{"block_sum"}},
		// The relocatable object keeps warp_sum as a function of its own,
		// not a kernel.
		{"reduce.sm_80.rel.cubin", "sm_80", []string{"block_sum"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b := binaryTestdata(t, "cubin", tt.file)
			if f := code.DetectFormat(tt.file, b); f != code.FormatCUBIN {
				t.Errorf("DetectFormat = %v", f)
			}
			info, err := code.Inspect(code.FormatCUBIN, b, code.Options{Name: tt.file})
			if err != nil {
				t.Fatal(err)
			}
			if info.Arch != tt.arch {
				t.Errorf("Arch = %q, want %q", info.Arch, tt.arch)
			}
			if got := strings.Join(info.EntryNames(), ","); got != strings.Join(tt.entries, ",") {
				t.Errorf("entries = %s, want %s", got, strings.Join(tt.entries, ","))
			}
			for _, e := range info.Entries {
				if e.Kind != "kernel" || !e.HasOffset || e.Offset <= 0 || e.Offset >= int64(len(b)) {
					t.Errorf("entry %+v: want kind kernel and an offset inside the file", e)
				}
			}
			if len(info.Others) != 0 {
				t.Errorf("Others = %v", info.Others)
			}
			if info.Format != code.FormatCUBIN {
				t.Errorf("Format = %v", info.Format)
			}
		})
	}
}

func TestCUBINEntryOffsetIsKernelCode(t *testing.T) {
	b := binaryTestdata(t, "cubin", "vadd.sm_80.cubin")
	f := cubinParse(t, b)
	info, err := code.Inspect(code.FormatCUBIN, b, code.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range info.Entries {
		s := f.Section(".text." + e.Name)
		if s == nil || uint64(e.Offset) != s.Offset {
			t.Errorf("entry %s at byte %d, want the start of its section .text.%s", e.Name, e.Offset, e.Name)
		}
	}
}

func TestCUBINValidateEntry(t *testing.T) {
	b := binaryTestdata(t, "cubin", "vadd.sm_80.cubin")
	opts := code.Options{Name: "vadd.cubin"}
	if _, err := code.Validate(code.FromCUBIN(b, "vadd"), opts); err != nil {
		t.Errorf("entry vadd: %v", err)
	}
	if _, err := code.Validate(code.FromCUBIN(b, "vscale"), opts); err != nil {
		t.Errorf("entry vscale: %v", err)
	}
	info, err := code.Inspect(code.FormatCUBIN, b, opts)
	if err != nil {
		t.Fatal(err)
	}
	first := info.Entries[0].Offset

	_, err = code.Validate(code.FromCUBIN(b, "foo"), opts)
	wantBinaryErr(t, err, code.ErrEntryNotFound, first, `entry "foo" not found`)
	want := fmt.Sprintf(`vadd.cubin: byte %d: entry "foo" not found; entries: vscale, vadd`, first)
	if err.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", err, want)
	}

	// The device function is in the file, inlined into each kernel's
	// section, but it is not an entry.
	_, err = code.Validate(code.FromCUBIN(b, "clampf"), opts)
	wantBinaryErr(t, err, code.ErrEntryNotFound, -1, `entry "clampf" not found`)
	_, err = code.Validate(code.FromCUBIN(binaryTestdata(t, "cubin", "reduce.sm_80.rel.cubin"), "warp_sum"), opts)
	wantBinaryErr(t, err, code.ErrEntryNotFound, -1, `entry "warp_sum" not found; entries: block_sum`)
}

func TestCUBINArch(t *testing.T) {
	sm52 := binaryTestdata(t, "cubin", "vadd.sm_52.cubin")
	sm80 := binaryTestdata(t, "cubin", "vadd.sm_80.cubin")
	sm90 := binaryTestdata(t, "cubin", "vadd.sm_90.cubin")
	// The arch-specific sm_90a: ptxas 11.8 cannot make one, so set the
	// flag on the sm_90 binary.
	sm90a := bytes.Clone(sm90)
	binary.LittleEndian.PutUint32(sm90a[0x30:], binary.LittleEndian.Uint32(sm90a[0x30:])|0x800)

	tests := []struct {
		name   string
		b      []byte
		device string
		ok     bool
	}{
		{"sm_80 on sm_80", sm80, "sm_80", true},
		{"sm_80 on sm_86", sm80, "sm_86", true},
		{"sm_80 on sm_89", sm80, "sm_89", true},
		{"sm_80 on sm_75", sm80, "sm_75", false},
		{"sm_80 on sm_90", sm80, "sm_90", false},
		{"sm_52 on sm_53", sm52, "sm_53", true},
		{"sm_52 on sm_61", sm52, "sm_61", false},
		{"sm_52 on sm_50", sm52, "sm_50", false},
		{"sm_90 on sm_90", sm90, "sm_90", true},
		{"sm_90 on sm_90a", sm90, "sm_90a", true},
		{"sm_90 on sm_100", sm90, "sm_100", false},
		{"sm_90a on sm_90a", sm90a, "sm_90a", true},
		{"sm_90a on sm_90", sm90a, "sm_90", true},
		{"sm_90a on sm_92", sm90a, "sm_92", false},
		{"upper case device name", sm80, "SM_86", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := code.Inspect(code.FormatCUBIN, tt.b, code.Options{Name: "k.cubin", Arch: tt.device})
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			e := wantBinaryErr(t, err, code.ErrArch, 0x30, "cannot run on "+tt.device)
			arch, _, _ := strings.Cut(tt.name, " ")
			if !strings.Contains(e.Reason, arch) {
				t.Errorf("reason %q does not name the CUBIN's %s", e.Reason, arch)
			}
			if info != nil {
				t.Errorf("info %v with an error", info)
			}
		})
	}

	info, err := code.Inspect(code.FormatCUBIN, sm90a, code.Options{})
	if err != nil || info.Arch != "sm_90a" {
		t.Errorf("sm_90a binary: Arch %v, err %v", info, err)
	}
	_, err = code.Inspect(code.FormatCUBIN, sm90a, code.Options{Arch: "sm_92"})
	wantBinaryErr(t, err, code.ErrArch, 0x30, "only on exactly its own architecture")
	_, err = code.Inspect(code.FormatCUBIN, sm80, code.Options{Arch: "sm_90"})
	wantBinaryErr(t, err, code.ErrArch, 0x30, "CUBIN for sm_80 cannot run on sm_90: a CUBIN runs only on its own major version")
}

func TestCUBINBadArchName(t *testing.T) {
	b := binaryTestdata(t, "cubin", "vadd.sm_80.cubin")
	for _, arch := range []string{"sm_8", "sm_", "sm_x0", "sm_80b", "sm_080", "sm_1000", "gfx90a", "80", "compute_80"} {
		_, err := code.Inspect(code.FormatCUBIN, b, code.Options{Arch: arch})
		substr := "invalid architecture"
		if arch == "compute_80" {
			substr = "virtual architecture"
		}
		wantBinaryErr(t, err, code.ErrArch, -1, substr)
	}
}

func TestCUBINELFABIVersion8(t *testing.T) {
	// From ELF ABI version 8 the SM number is in bits 8-15 and the
	// arch-specific flag is 0x8.
	b := bytes.Clone(binaryTestdata(t, "cubin", "vadd.sm_90.cubin"))
	b[elf.EI_ABIVERSION] = 8
	for _, tt := range []struct {
		flags uint32
		arch  string
	}{
		{0x06005a04, "sm_90"},
		{0x06006402, "sm_100"},
		{0x0600640a, "sm_100a"},
		{0x06007802, "sm_120"},
	} {
		binary.LittleEndian.PutUint32(b[0x30:], tt.flags)
		info, err := code.Inspect(code.FormatCUBIN, b, code.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if info.Arch != tt.arch {
			t.Errorf("flags %#x: Arch %q, want %q", tt.flags, info.Arch, tt.arch)
		}
	}
	_, err := code.Inspect(code.FormatCUBIN, b, code.Options{Arch: "sm_100"})
	wantBinaryErr(t, err, code.ErrArch, 0x30, "CUBIN for sm_120 cannot run on sm_100")
}

// cubinTinyELF returns a 64-byte ELF64 header for machine, with no
// sections and no program headers.
func cubinTinyELF(machine elf.Machine) []byte {
	b := make([]byte, 64)
	copy(b, elf.ELFMAG)
	b[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	b[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	b[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	le := binary.LittleEndian
	le.PutUint16(b[16:], uint16(elf.ET_EXEC))
	le.PutUint16(b[18:], uint16(machine))
	le.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	le.PutUint16(b[52:], 64) // e_ehsize
	le.PutUint16(b[54:], 56) // e_phentsize
	le.PutUint16(b[58:], 64) // e_shentsize
	return b
}

func TestCUBINWrongMachine(t *testing.T) {
	_, err := code.Inspect(code.FormatCUBIN, cubinTinyELF(elf.EM_X86_64), code.Options{Name: "host.cubin"})
	e := wantBinaryErr(t, err, code.ErrMalformed, 18, "EM_X86_64")
	if !strings.Contains(e.Reason, "EM_CUDA") {
		t.Errorf("reason %q does not say what machine is wanted", e.Reason)
	}
	_, err = code.Inspect(code.FormatCUBIN, cubinTinyELF(elf.EM_AARCH64), code.Options{})
	wantBinaryErr(t, err, code.ErrMalformed, 18, "EM_AARCH64")

	// A real host executable, where there is one.
	if b, err := os.ReadFile("/bin/true"); err == nil && bytes.HasPrefix(b, []byte(elf.ELFMAG)) {
		_, err := code.Inspect(code.FormatCUBIN, b, code.Options{})
		wantBinaryErr(t, err, code.ErrMalformed, 18, "not EM_CUDA")
	}
}

func TestCUBINMalformed(t *testing.T) {
	good := binaryTestdata(t, "cubin", "vadd.sm_80.cubin")
	le := binary.LittleEndian
	patch := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	shoff := le.Uint64(good[0x28:])

	tests := []struct {
		name   string
		b      []byte
		off    int64
		substr string
	}{
		{"not ELF", []byte("this is not an ELF file at all"), 0, "ELF magic"},
		{"magic only", []byte("\x7fEL"), 0, "ELF magic"},
		{"truncated header", good[:40], -1, "invalid ELF file"},
		{"truncated sections", good[:len(good)-100], -1, "invalid ELF file"},
		{"bad class", patch(func(b []byte) { b[elf.EI_CLASS] = 9 }), -1, "invalid ELF file"},
		{"section headers past the end", patch(func(b []byte) { le.PutUint64(b[0x28:], uint64(len(b))) }), -1, "invalid ELF file"},
		{"section name table out of range", patch(func(b []byte) { le.PutUint16(b[0x3e:], 200) }), -1, "invalid ELF file"},
		{"no SM in flags", patch(func(b []byte) { b[0x30] = 0 }), 0x30, "name no SM architecture"},
		{"section past the end", patch(func(b []byte) {
			le.PutUint64(b[shoff+3*64+0x20:], uint64(len(b))) // section 3's sh_size
		}), int64(shoff + 3*64), "runs past the end of the file"},
		{"compressed section", patch(func(b []byte) {
			at := shoff + 3*64 + 8 // section 3's sh_flags
			le.PutUint64(b[at:], le.Uint64(b[at:])|uint64(elf.SHF_COMPRESSED))
		}), int64(shoff + 3*64), "compressed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := code.Inspect(code.FormatCUBIN, tt.b, code.Options{Name: "bad.cubin"})
			wantBinaryErr(t, err, code.ErrMalformed, tt.off, tt.substr)
		})
	}
}

func TestCUBINNVInfoFallback(t *testing.T) {
	// Without STO_CUDA_ENTRY on any symbol, the .nv.info.NAME sections
	// name the kernels, in section order.
	b := cubinClearEntryFlags(t, binaryTestdata(t, "cubin", "vadd.sm_80.cubin"))
	info, err := code.Inspect(code.FormatCUBIN, b, code.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(info.EntryNames(), ","); got != "vscale,vadd" {
		t.Errorf("entries %s, want vscale,vadd", got)
	}

	// With no kernel marked and no .nv.info.NAME section, there is no entry.
	none := bytes.ReplaceAll(b, []byte(".nv.info."), []byte(".nv.infx."))
	_, err = code.Inspect(code.FormatCUBIN, none, code.Options{Name: "none.cubin"})
	wantBinaryErr(t, err, code.ErrNoEntries, -1, "no compute entry point")
}

func TestCUBINStrippedSymbols(t *testing.T) {
	// A symbol table of only the null symbol: the kernels come from the
	// .nv.info sections.
	b := bytes.Clone(binaryTestdata(t, "cubin", "vadd.sm_80.cubin"))
	f := cubinParse(t, b)
	for i, s := range f.Sections {
		if s.Type == elf.SHT_SYMTAB {
			at := binary.LittleEndian.Uint64(b[0x28:]) + uint64(i)*64 + 32 // sh_size
			binary.LittleEndian.PutUint64(b[at:], elf.Sym64Size)
		}
	}
	info, err := code.Inspect(code.FormatCUBIN, b, code.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(info.EntryNames(), ","); got != "vscale,vadd" {
		t.Errorf("entries %s, want vscale,vadd", got)
	}
}

func FuzzCUBIN(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "cubin", "*.cubin"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(cubinTinyELF(elf.EM_X86_64))
	f.Add(cubinTinyELF(elf.EM_CUDA))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		info, err := code.Inspect(code.FormatCUBIN, b, code.Options{Arch: "sm_86"})
		checkFuzzResult(t, info, err)
	})
}

// checkFuzzResult checks what every inspector promises on any input:
// either an Info with at least one entry, or an error that is an *Error.
func checkFuzzResult(t *testing.T, info *code.Info, err error) {
	t.Helper()
	if err != nil {
		var e *code.Error
		if !errors.As(err, &e) {
			t.Fatalf("error %q (%T) is not a *code.Error", err, err)
		}
		if info != nil {
			t.Fatalf("info %+v with error %v", info, err)
		}
		return
	}
	if info == nil || len(info.Entries) == 0 {
		t.Fatalf("no error and no entries: %+v", info)
	}
}
