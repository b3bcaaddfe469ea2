package code

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A CUBIN is an ELF file for machine EM_CUDA. What this file relies on:
//
// The SM architecture is in e_flags. Under ELF ABI version 7
// (EI_ABIVERSION; ptxas 11.8 writes it for sm_52 to sm_90) the real SM
// number is the low byte (0x50 is sm_80), bits 16-23 hold the virtual
// architecture of the PTX it came from (its .target), bits 8-11 hold
// texture-mode (0x100 unified, 0x200 independent) and 64-bit-address
// (0x400) flags, and bit 0x800 marks an arch-specific target such as
// sm_90a. Under ABI version 8, which newer toolkits write, the SM number
// is in bits 8-15 and the arch-specific flag is bit 0x8.
//
// A kernel is an STT_FUNC symbol defined in a section ".text.NAME" whose
// st_other has STO_CUDA_ENTRY (0x10). Device functions that ptxas keeps
// (".visible .func", or copies of a callee inlined per kernel) are
// STT_FUNC symbols without it. When the symbol table marks no kernel at
// all (it may have been stripped), the ".nv.info.NAME" sections that have
// a ".text.NAME" beside them name the kernels instead: ptxas writes one
// for each kernel. In a relocatable object it writes them for device
// functions too, which then cannot be told apart.
const (
	cubinEntryOther = 0x10 // STO_CUDA_ENTRY in st_other

	cubinABIv2 = 8 // EI_ABIVERSION from which the SM moved to bits 8-15

	cubinAccelV1 = 0x800 // arch-specific ("a") flag, ABI <= 7
	cubinAccelV2 = 0x8   // arch-specific ("a") flag, ABI 8
)

// cubinSM is a CUDA SM architecture: sm_86 is {8, 6, false}, sm_90a is
// {9, 0, true}.
type cubinSM struct {
	major, minor int
	specific     bool // the "a" suffix: runs only on exactly this SM
}

func (a cubinSM) String() string {
	s := fmt.Sprintf("sm_%d%d", a.major, a.minor)
	if a.specific {
		s += "a"
	}
	return s
}

// runsOn reports whether a binary for a runs on a device of architecture
// dev: within one major version a binary runs on any later minor version;
// an arch-specific binary only on exactly its own SM.
func (a cubinSM) runsOn(dev cubinSM) bool {
	if a.specific {
		return a.major == dev.major && a.minor == dev.minor
	}
	return a.major == dev.major && a.minor <= dev.minor
}

// parseCUBINDeviceArch parses the device architecture a CUBIN must run on:
// "sm_XY" or "sm_XYa" (XY is the SM number, 10 to 999, as in sm_86 or
// sm_100a).
func parseCUBINDeviceArch(s string) (cubinSM, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if strings.HasPrefix(t, "compute_") {
		return cubinSM{}, fmt.Errorf("%q is a virtual architecture; a CUBIN runs on a real one (sm_%s)", s, strings.TrimPrefix(t, "compute_"))
	}
	num, ok := strings.CutPrefix(t, "sm_")
	if !ok {
		return cubinSM{}, fmt.Errorf("invalid architecture %q: want sm_XY, as in sm_80 or sm_90a", s)
	}
	specific := false
	if n, ok := strings.CutSuffix(num, "a"); ok {
		num, specific = n, true
	}
	if len(num) < 2 || len(num) > 3 || num[0] == '0' {
		return cubinSM{}, fmt.Errorf("invalid architecture %q: want sm_XY, as in sm_80 or sm_90a", s)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 10 {
		return cubinSM{}, fmt.Errorf("invalid architecture %q: want sm_XY, as in sm_80 or sm_90a", s)
	}
	return cubinSM{major: n / 10, minor: n % 10, specific: specific}, nil
}

// cubinELFFlags returns the ELF header fields that debug/elf does not
// export: EI_ABIVERSION, e_flags and the offset e_flags is at.
func cubinELFFlags(f *elf.File, b []byte) (abi uint8, flags uint32, off int64) {
	off = 0x30
	if f.Class == elf.ELFCLASS32 {
		off = 0x24
	}
	return b[elf.EI_ABIVERSION], f.ByteOrder.Uint32(b[off:]), off
}

// cubinArch decodes the SM architecture from the ELF ABI version and
// e_flags. ok is false when the flags name none.
func cubinArch(abi uint8, flags uint32) (a cubinSM, ok bool) {
	var sm uint32
	if abi >= cubinABIv2 {
		sm = flags >> 8 & 0xff
		a.specific = flags&cubinAccelV2 != 0
	} else {
		sm = flags & 0xff
		a.specific = flags&cubinAccelV1 != 0
	}
	if sm < 10 {
		return cubinSM{}, false
	}
	a.major, a.minor = int(sm/10), int(sm%10)
	return a, true
}

// cubinCheckSections checks the section headers before debug/elf reads
// them: no section may be compressed, and every section with contents
// must lie inside the file. debug/elf would otherwise read a section as
// large as its header claims — inflating a compressed section name table
// as it opens the file, or reading a symbol table in large chunks until
// the file ends. CUDA never writes compressed sections.
func cubinCheckSections(name string, b []byte) error {
	if len(b) < 0x34 || b[elf.EI_CLASS] != byte(elf.ELFCLASS32) && b[elf.EI_CLASS] != byte(elf.ELFCLASS64) {
		return nil // debug/elf reports what is wrong
	}
	var bo binary.ByteOrder
	switch elf.Data(b[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		bo = binary.LittleEndian
	case elf.ELFDATA2MSB:
		bo = binary.BigEndian
	default:
		return nil
	}
	is64 := elf.Class(b[elf.EI_CLASS]) == elf.ELFCLASS64
	// word reads a field of the section header at at: 8 bytes wide in
	// ELF64 when wide, else 4.
	word := func(at uint64, wide bool) uint64 {
		if wide && is64 {
			return bo.Uint64(b[at:])
		}
		return uint64(bo.Uint32(b[at:]))
	}
	var shoff, shnum, entsize, minEntsize uint64
	var flagsAt, offAt, sizeAt uint64
	if is64 {
		if len(b) < 0x40 {
			return nil
		}
		shoff = bo.Uint64(b[0x28:])
		entsize = uint64(bo.Uint16(b[0x3a:]))
		shnum = uint64(bo.Uint16(b[0x3c:]))
		minEntsize, flagsAt, offAt, sizeAt = 0x40, 0x08, 0x18, 0x20
	} else {
		shoff = uint64(bo.Uint32(b[0x20:]))
		entsize = uint64(bo.Uint16(b[0x2e:]))
		shnum = uint64(bo.Uint16(b[0x30:]))
		minEntsize, flagsAt, offAt, sizeAt = 0x28, 0x08, 0x10, 0x14
	}
	n := uint64(len(b))
	if entsize < minEntsize || shoff >= n || entsize > n-shoff {
		return nil // debug/elf reports bad section headers
	}
	// Section 0 holds the real count when e_shnum is 0; the loop is bounded
	// by the file either way.
	if shnum == 0 {
		shnum = word(shoff+sizeAt, true)
	}
	for i := uint64(0); i < shnum && i < (n-shoff)/entsize; i++ {
		at := shoff + i*entsize
		if word(at+flagsAt, true)&uint64(elf.SHF_COMPRESSED) != 0 {
			return offsetErr(name, FormatCUBIN, int64(at), ErrMalformed, "section %d is compressed (SHF_COMPRESSED); CUBIN sections never are", i)
		}
		typ := elf.SectionType(bo.Uint32(b[at+4:]))
		off, size := word(at+offAt, true), word(at+sizeAt, true)
		if i > 0 && typ != elf.SHT_NOBITS && typ != elf.SHT_NULL && (off > n || size > n-off) {
			return offsetErr(name, FormatCUBIN, int64(at), ErrMalformed, "section %d (offset %d, size %d) runs past the end of the file (%d bytes)", i, off, size, n)
		}
	}
	return nil
}

// cubinReader reads a CUBIN as debug/elf expects it. CUDA writes its own
// value in the ELF header's e_version (0x76 from ptxas 11.8) where
// debug/elf insists on EV_CURRENT, so reads of that field see EV_CURRENT
// in the file's byte order.
type cubinReader struct {
	b       []byte
	version [4]byte
}

func (r *cubinReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	var err error
	if n < len(p) {
		err = io.EOF
	}
	for i := 0; i < n && off+int64(i) < cubinVersionOff+4; i++ {
		if at := off + int64(i); at >= cubinVersionOff && at < cubinVersionOff+4 {
			p[i] = r.version[at-cubinVersionOff]
		}
	}
	return n, err
}

// cubinVersionOff is the offset of e_version in an ELF header.
const cubinVersionOff = 20

// cubinOpen parses b with debug/elf, turning a panic inside it into an
// error.
func cubinOpen(b []byte) (f *elf.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("ELF parser failed: %v", r)
		}
	}()
	r := &cubinReader{b: b}
	if len(b) > elf.EI_DATA && elf.Data(b[elf.EI_DATA]) == elf.ELFDATA2MSB {
		binary.BigEndian.PutUint32(r.version[:], uint32(elf.EV_CURRENT))
	} else {
		binary.LittleEndian.PutUint32(r.version[:], uint32(elf.EV_CURRENT))
	}
	return elf.NewFile(r)
}

// cubinSymbols reads the symbol table of f, turning a panic inside
// debug/elf into an error.
func cubinSymbols(f *elf.File) (syms []elf.Symbol, err error) {
	defer func() {
		if r := recover(); r != nil {
			syms, err = nil, fmt.Errorf("ELF parser failed: %v", r)
		}
	}()
	for _, s := range f.Sections {
		if s.Type == elf.SHT_SYMTAB {
			if strings.HasPrefix(s.Name, ".zdebug") {
				return nil, fmt.Errorf("symbol table section %q is compressed", s.Name)
			}
			if int(s.Link) < len(f.Sections) && strings.HasPrefix(f.Sections[s.Link].Name, ".zdebug") {
				return nil, fmt.Errorf("string table section %q is compressed", f.Sections[s.Link].Name)
			}
		}
	}
	syms, err = f.Symbols()
	if errors.Is(err, elf.ErrNoSymbols) {
		return nil, nil
	}
	return syms, err
}

func inspectCUBIN(name string, b []byte, opts Options) (*Info, error) {
	if len(b) < 4 || string(b[:4]) != elf.ELFMAG {
		return nil, offsetErr(name, FormatCUBIN, 0, ErrMalformed, "not an ELF file: the file does not start with the ELF magic \\x7fELF")
	}
	if err := cubinCheckSections(name, b); err != nil {
		return nil, err
	}
	f, err := cubinOpen(b)
	if err != nil {
		return nil, fileErr(name, FormatCUBIN, ErrMalformed, "invalid ELF file: %v", err)
	}
	if f.Machine != emCUDA {
		return nil, offsetErr(name, FormatCUBIN, 18, ErrMalformed, "ELF machine is %s (%d), not EM_CUDA (190): not a CUBIN", f.Machine, uint16(f.Machine))
	}
	abi, flags, flagsOff := cubinELFFlags(f, b)
	arch, ok := cubinArch(abi, flags)
	if !ok {
		return nil, offsetErr(name, FormatCUBIN, flagsOff, ErrMalformed, "ELF flags 0x%x (ABI version %d) name no SM architecture", flags, abi)
	}
	info := &Info{Arch: arch.String()}

	syms, err := cubinSymbols(f)
	if err != nil {
		return nil, fileErr(name, FormatCUBIN, ErrMalformed, "invalid ELF symbol table: %v", err)
	}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF || s.Section >= elf.SHN_LORESERVE || int(s.Section) >= len(f.Sections) {
			continue
		}
		sec := f.Sections[s.Section]
		if !strings.HasPrefix(sec.Name, ".text.") {
			continue
		}
		if s.Other&cubinEntryOther == 0 {
			continue
		}
		e := Entry{Name: s.Name, Kind: "kernel"}
		if rel := s.Value - sec.Addr; sec.Type != elf.SHT_NOBITS && s.Value >= sec.Addr && rel < sec.FileSize &&
			sec.Offset < uint64(len(b)) && rel < uint64(len(b))-sec.Offset {
			e.Offset, e.HasOffset = int64(sec.Offset+rel), true
		}
		info.Entries = append(info.Entries, e)
	}
	if len(info.Entries) == 0 {
		text := make(map[string]*elf.Section)
		for _, s := range f.Sections {
			if n, ok := strings.CutPrefix(s.Name, ".text."); ok && n != "" {
				text[n] = s
			}
		}
		for _, s := range f.Sections {
			n, ok := strings.CutPrefix(s.Name, ".nv.info.")
			if !ok || text[n] == nil {
				continue
			}
			e := Entry{Name: n, Kind: "kernel"}
			if t := text[n]; t.Type != elf.SHT_NOBITS && t.Offset < uint64(len(b)) {
				e.Offset, e.HasOffset = int64(t.Offset), true
			}
			info.Entries = append(info.Entries, e)
		}
	}

	if opts.Arch != "" {
		dev, err := parseCUBINDeviceArch(opts.Arch)
		if err != nil {
			return nil, fileErr(name, FormatCUBIN, ErrArch, "%v", err)
		}
		if !arch.runsOn(dev) {
			why := "a CUBIN runs only on its own major version, at the same or a later minor version"
			if arch.specific {
				why = "an arch-specific CUBIN runs only on exactly its own architecture"
			}
			return nil, offsetErr(name, FormatCUBIN, flagsOff, ErrArch, "CUBIN for %s cannot run on %s: %s", arch, strings.TrimSpace(opts.Arch), why)
		}
	}
	return info, nil
}
