package cuda

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hotkernel/hotkernel/code"
	cu "github.com/hotkernel/hotkernel/internal/cuda"
)

var le = binary.LittleEndian

// ABIVersion is the version of the CUDA kernel ABI this package speaks;
// a module's hk_abi global must hold it.
const ABIVersion = 1

// Limits the ABI puts on a module's globals.
const (
	maxOutputLimit = 1 << 20 // hk_max_output
	maxBlock       = 1024    // hk_block
)

// Names of the ABI's entries and globals.
const (
	entryProcess = "hk_process"
	entryInit    = "hk_init"
	entryMigrate = "hk_migrate"
)

// meta is what a module tells the host through the ABI's globals and
// entries.
type meta struct {
	stateLen   uint64
	layout     uint32
	maxOutput  uint32
	block      uint32
	hasInit    bool
	hasMigrate bool
}

// global describes one ABI global.
type global struct {
	name     string
	size     uint64
	required bool
}

var globals = []global{
	{"hk_abi", 4, true},
	{"hk_state_len", 8, true},
	{"hk_state_layout", 4, true},
	{"hk_max_output", 4, false},
	{"hk_block", 4, false},
}

// set stores the value of the named global in m.
func (m *meta) set(name string, v uint64) {
	switch name {
	case "hk_state_len":
		m.stateLen = v
	case "hk_state_layout":
		m.layout = uint32(v)
	case "hk_max_output":
		m.maxOutput = uint32(v)
	case "hk_block":
		m.block = uint32(v)
	}
}

// check applies the ABI's limits. abi is the value of hk_abi.
func (m *meta) check(file string, f code.Format, abi uint64, totalMem uint64) error {
	bad := func(format string, args ...any) error {
		return &code.Error{File: file, Format: f, Reason: fmt.Sprintf(format, args...), Kind: ErrABI}
	}
	switch {
	case abi != ABIVersion:
		return bad("hk_abi is %d; this host speaks ABI version %d", abi, ABIVersion)
	case m.maxOutput > maxOutputLimit:
		return bad("hk_max_output is %d; at most %d", m.maxOutput, maxOutputLimit)
	case m.block > maxBlock:
		return bad("hk_block is %d; at most %d threads per block", m.block, maxBlock)
	case totalMem > 0 && m.stateLen > totalMem:
		return bad("hk_state_len is %d bytes; the device has %d", m.stateLen, totalMem)
	}
	return nil
}

// readMeta reads the ABI globals and entries of a loaded module.
func readMeta(c *cu.Context, mod *cu.Module, file string, f code.Format) (meta, error) {
	var m meta
	var abi uint64
	var buf [8]byte
	for _, g := range globals {
		p, size, err := mod.Global(g.name)
		if cu.CodeOf(err) == cu.ErrNotFound {
			if g.required {
				return m, &code.Error{File: file, Format: f, Kind: ErrABI,
					Reason: fmt.Sprintf("global %s is missing: declare `.visible .global .u%d %s = ...;`", g.name, g.size*8, g.name)}
			}
			continue
		}
		if err != nil {
			return m, fmt.Errorf("read global %s: %w", g.name, err)
		}
		if size != g.size {
			return m, &code.Error{File: file, Format: f, Kind: ErrABI,
				Reason: fmt.Sprintf("global %s is %d bytes; the ABI wants %d (.u%d)", g.name, size, g.size, g.size*8)}
		}
		if err := c.CopyDtoH(buf[:size], p); err != nil {
			return m, fmt.Errorf("read global %s: %w", g.name, err)
		}
		v := uint64(le.Uint32(buf[:4]))
		if size == 8 {
			v = le.Uint64(buf[:])
		}
		if g.name == "hk_abi" {
			abi = v
		}
		m.set(g.name, v)
	}
	for _, e := range []struct {
		name string
		has  *bool
	}{{entryProcess, nil}, {entryInit, &m.hasInit}, {entryMigrate, &m.hasMigrate}} {
		_, err := mod.Function(e.name)
		switch {
		case err == nil:
			if e.has != nil {
				*e.has = true
			}
		case cu.CodeOf(err) == cu.ErrNotFound && e.has != nil:
		case cu.CodeOf(err) == cu.ErrNotFound:
			return m, &code.Error{File: file, Format: f, Kind: ErrABI, Reason: "entry hk_process is missing"}
		default:
			return m, fmt.Errorf("look up %s: %w", e.name, err)
		}
	}
	return m, m.check(file, f, abi, c.Device().TotalMemory)
}

// parsePTXMeta reads the ABI globals and entries from PTX text, for a
// Backend without a device. It understands the initialised global
// declarations compilers write:
//
//	.visible .global .align 8 .u64 hk_state_len = 4096;
func parsePTXMeta(ptx []byte, info *code.Info, file string) (meta, error) {
	var m meta
	found := map[string]uint64{}
	lines := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(ptx))
	sc.Buffer(nil, len(ptx)+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.Contains(line, ".global") {
			continue
		}
		name, typ, val, ok := parseGlobal(line)
		if !ok {
			continue
		}
		for _, g := range globals {
			if g.name != name {
				continue
			}
			if want := fmt.Sprintf("%d", g.size*8); !strings.HasSuffix(typ, want) {
				return m, &code.Error{File: file, Format: code.FormatPTX, Line: n, Kind: ErrABI,
					Reason: fmt.Sprintf("global %s is %s; the ABI wants .u%d", name, typ, g.size*8)}
			}
			v, err := strconv.ParseUint(val, 0, 64)
			if err != nil {
				return m, &code.Error{File: file, Format: code.FormatPTX, Line: n, Kind: ErrABI,
					Reason: fmt.Sprintf("global %s: initial value %q is not a number", name, val)}
			}
			found[name], lines[name] = v, n
			m.set(name, v)
		}
	}
	for _, g := range globals {
		if _, ok := found[g.name]; !ok && g.required {
			return m, &code.Error{File: file, Format: code.FormatPTX, Kind: ErrABI,
				Reason: fmt.Sprintf("global %s is missing: declare `.visible .global .u%d %s = ...;`", g.name, g.size*8, g.name)}
		}
	}
	for _, e := range info.Entries {
		switch e.Name {
		case entryInit:
			m.hasInit = true
		case entryMigrate:
			m.hasMigrate = true
		}
	}
	if !slices.Contains(info.EntryNames(), entryProcess) {
		return m, &code.Error{File: file, Format: code.FormatPTX, Kind: ErrABI, Reason: "entry hk_process is missing"}
	}
	if err := m.check(file, code.FormatPTX, found["hk_abi"], 0); err != nil {
		var ce *code.Error
		if errors.As(err, &ce) {
			ce.Line = lines["hk_abi"]
		}
		return m, err
	}
	return m, nil
}

// parseGlobal splits `.visible .global .align 8 .u64 NAME = VALUE;`.
func parseGlobal(line string) (name, typ, val string, ok bool) {
	line, _, _ = strings.Cut(line, "//")
	decl, val, ok := strings.Cut(strings.TrimSuffix(strings.TrimSpace(line), ";"), "=")
	if !ok {
		return "", "", "", false
	}
	f := strings.Fields(decl)
	if len(f) < 2 {
		return "", "", "", false
	}
	name, typ = f[len(f)-1], f[len(f)-2]
	if !strings.HasPrefix(typ, ".u") && !strings.HasPrefix(typ, ".b") && !strings.HasPrefix(typ, ".s") {
		return "", "", "", false
	}
	return name, typ, strings.TrimSpace(val), true
}
