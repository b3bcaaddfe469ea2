package code

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// WebAssembly modules are validated in two steps. First a structural scan
// walks every section and every vector in it, checking that each count and
// size fits in the bytes that remain, so that the decoder that follows
// never sizes a buffer from a count the file cannot back; it also records
// where each section, function body and export is, for error offsets and
// entry points. Then wazero compiles the module — decoding it fully and
// validating every function — with its interpreter, the cheaper of its two
// engines, and without instantiating it, so no start function runs.
//
// Custom sections carry no semantics, so after the scan has checked their
// names they are left out of what wazero sees.

// wasmFeatures are the WebAssembly features a module may use: WebAssembly
// 2.0 (SIMD, bulk memory, reference types, multi-value, ...) and threads
// (shared memory and atomics).
const wasmFeatures = api.CoreFeaturesV2 | experimental.CoreFeaturesThreads

// Limits of the structural scan. wasmMaxLocals is the per-function limit
// that browsers apply. The whole module may declare wasmLocalsBudget locals
// plus one per byte of the file: compiling a function costs memory for
// each local it declares, and a run of locals of one type takes a few
// bytes to declare however long it is, while a local that is used takes at
// least a byte of code.
const (
	wasmMaxLocals    = 50000
	wasmLocalsBudget = 1 << 16
)

// WebAssembly section ids.
const (
	wasmSecCustom    = 0
	wasmSecType      = 1
	wasmSecImport    = 2
	wasmSecFunction  = 3
	wasmSecTable     = 4
	wasmSecMemory    = 5
	wasmSecGlobal    = 6
	wasmSecExport    = 7
	wasmSecStart     = 8
	wasmSecElement   = 9
	wasmSecCode      = 10
	wasmSecData      = 11
	wasmSecDataCount = 12
	wasmSecTag       = 13
)

var wasmSectionNames = [...]string{
	wasmSecCustom:    "custom",
	wasmSecType:      "type",
	wasmSecImport:    "import",
	wasmSecFunction:  "function",
	wasmSecTable:     "table",
	wasmSecMemory:    "memory",
	wasmSecGlobal:    "global",
	wasmSecExport:    "export",
	wasmSecStart:     "start",
	wasmSecElement:   "element",
	wasmSecCode:      "code",
	wasmSecData:      "data",
	wasmSecDataCount: "data_count",
	wasmSecTag:       "tag",
}

// wasmSectionRank orders the non-custom sections as the binary format
// requires them to appear.
var wasmSectionRank = [...]int{
	wasmSecType:      1,
	wasmSecImport:    2,
	wasmSecFunction:  3,
	wasmSecTable:     4,
	wasmSecMemory:    5,
	wasmSecTag:       6,
	wasmSecGlobal:    7,
	wasmSecExport:    8,
	wasmSecStart:     9,
	wasmSecElement:   10,
	wasmSecDataCount: 11,
	wasmSecCode:      12,
	wasmSecData:      13,
}

// wasmSection is one section of a module: its id and where its header and
// content are.
type wasmSection struct {
	id         byte
	start      int // offset of the id byte
	begin, end int // content
}

// wasmExport is one entry of the export section.
type wasmExport struct {
	name string
	kind byte
	off  int
}

// wasmModule is what the structural scan learned.
type wasmModule struct {
	sections []wasmSection
	bodies   []int // offset of each function body in the code section
	exports  []wasmExport
}

// wasmScanError is a structural fault at a byte offset.
type wasmScanError struct {
	off    int
	reason string
}

// wasmReader reads one bounded region of a module. The first fault sticks:
// later reads return zero values and the fault is reported once.
type wasmReader struct {
	b        []byte
	pos, end int
	err      *wasmScanError
}

func (r *wasmReader) fail(off int, format string, args ...any) {
	if r.err == nil {
		r.err = &wasmScanError{off: off, reason: fmt.Sprintf(format, args...)}
	}
}

func (r *wasmReader) byte(what string) byte {
	if r.err != nil {
		return 0
	}
	if r.pos >= r.end {
		r.fail(r.pos, "unexpected end of data reading %s", what)
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

// u32 reads an unsigned LEB128 value of at most 32 bits.
func (r *wasmReader) u32(what string) uint32 {
	start := r.pos
	var v uint32
	for i := 0; i < 5; i++ {
		c := r.byte(what)
		if r.err != nil {
			return 0
		}
		if i == 4 && c&0x80 != 0 {
			break
		}
		if i == 4 && c > 0x0f {
			r.fail(start, "%s: integer too large for 32 bits", what)
			return 0
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail(start, "%s: integer representation too long", what)
	return 0
}

// skipLEB skips a LEB128 value of at most max bytes.
func (r *wasmReader) skipLEB(max int, what string) {
	start := r.pos
	for i := 0; i < max; i++ {
		c := r.byte(what)
		if r.err != nil || c&0x80 == 0 {
			return
		}
	}
	r.fail(start, "%s: integer representation too long", what)
}

func (r *wasmReader) skip(n int, what string) {
	if r.err != nil {
		return
	}
	if n > r.end-r.pos {
		r.fail(r.pos, "%s: %d bytes run past the end of the section (%d left)", what, n, r.end-r.pos)
		return
	}
	r.pos += n
}

// count reads a vector length and checks that the rest of the region can
// hold that many elements of at least min bytes each.
func (r *wasmReader) count(min int, what string) int {
	at := r.pos
	n := r.u32(what + " count")
	if r.err != nil {
		return 0
	}
	if uint64(n)*uint64(min) > uint64(r.end-r.pos) {
		r.fail(at, "%s count %d cannot fit in the %d bytes left", what, n, r.end-r.pos)
		return 0
	}
	return int(n)
}

// name reads a length-prefixed UTF-8 string.
func (r *wasmReader) name(what string) string {
	at := r.pos
	n := r.u32(what + " length")
	if r.err != nil {
		return ""
	}
	if uint64(n) > uint64(r.end-r.pos) {
		r.fail(at, "%s: length %d runs past the end of the section (%d bytes left)", what, n, r.end-r.pos)
		return ""
	}
	s := r.b[r.pos : r.pos+int(n)]
	if !utf8.Valid(s) {
		r.fail(r.pos, "%s is not valid UTF-8", what)
		return ""
	}
	r.pos += int(n)
	return string(s)
}

// valType skips a value type: one byte, or a reference type prefix and a
// heap type.
func (r *wasmReader) valType(what string) {
	if c := r.byte(what); c == 0x63 || c == 0x64 {
		r.skipLEB(5, what+" heap type")
	}
}

func (r *wasmReader) limits(what string) {
	at := r.pos
	switch flags := r.byte(what + " limits"); flags {
	case 0x00, 0x02:
		r.u32(what + " minimum")
	case 0x01, 0x03:
		r.u32(what + " minimum")
		r.u32(what + " maximum")
	default:
		r.fail(at, "%s limits: invalid flags 0x%02x", what, flags)
	}
}

func (r *wasmReader) tableType(what string) {
	c := r.byte(what)
	init := c == 0x40
	if init {
		r.byte(what + " reserved byte")
		c = r.byte(what + " reference type")
	}
	if c == 0x63 || c == 0x64 {
		r.skipLEB(5, what+" heap type")
	}
	r.limits(what)
	if init {
		r.constExpr(what + " initializer")
	}
}

// constExpr skips a constant expression up to and including its end.
func (r *wasmReader) constExpr(what string) {
	for r.err == nil {
		at := r.pos
		switch op := r.byte(what); op {
		case 0x0b: // end
			return
		case 0x41: // i32.const
			r.skipLEB(5, what)
		case 0x42: // i64.const
			r.skipLEB(10, what)
		case 0x43: // f32.const
			r.skip(4, what)
		case 0x44: // f64.const
			r.skip(8, what)
		case 0x23, 0xd0, 0xd2: // global.get, ref.null, ref.func
			r.u32(what)
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant arithmetic
		case 0xfd: // v128.const
			if r.byte(what) != 0x0c {
				r.fail(at, "%s: invalid vector instruction in a constant expression", what)
				return
			}
			r.skip(16, what)
		default:
			if r.err == nil {
				r.fail(at, "%s: instruction 0x%02x is not allowed in a constant expression", what, op)
			}
		}
	}
}

// wasmScan checks the structure of module b (whose 8-byte header is
// already checked) and records its layout.
func wasmScan(b []byte) (*wasmModule, *wasmScanError) {
	m := &wasmModule{}
	lastRank := 0
	locals := 0
	budget := wasmLocalsBudget + len(b)
	for pos := 8; pos < len(b); {
		start := pos
		id := b[pos]
		hr := &wasmReader{b: b, pos: pos + 1, end: len(b)}
		size := hr.u32("section size")
		if hr.err != nil {
			return nil, hr.err
		}
		if int(id) >= len(wasmSectionNames) {
			return nil, &wasmScanError{start, fmt.Sprintf("unknown section id %d", id)}
		}
		sname := wasmSectionNames[id]
		if uint64(size) > uint64(len(b)-hr.pos) {
			return nil, &wasmScanError{start, fmt.Sprintf("%s section: size %d runs past the end of the file (%d bytes left)", sname, size, len(b)-hr.pos)}
		}
		if id != wasmSecCustom {
			rank := wasmSectionRank[id]
			if rank <= lastRank {
				return nil, &wasmScanError{start, fmt.Sprintf("%s section is out of order or repeated", sname)}
			}
			lastRank = rank
		}
		sec := wasmSection{id: id, start: start, begin: hr.pos, end: hr.pos + int(size)}
		m.sections = append(m.sections, sec)
		r := &wasmReader{b: b, pos: sec.begin, end: sec.end}
		switch id {
		case wasmSecCustom:
			r.name("custom section name")
			r.pos = r.end
		case wasmSecType:
			for i, n := 0, r.count(2, "type"); i < n && r.err == nil; i++ {
				form := r.pos
				switch c := r.byte("type form"); c {
				case 0x60:
					r.pos = form
					wasmFuncType(r)
				case 0x4e: // recursive group
					for j, k := 0, r.count(3, "recursive group type"); j < k && r.err == nil; j++ {
						wasmFuncType(r)
					}
				default:
					r.fail(form, "type %d: invalid form 0x%02x, want 0x60 (function type)", i, c)
				}
			}
		case wasmSecImport:
			for i, n := 0, r.count(4, "import"); i < n && r.err == nil; i++ {
				r.name("import module name")
				r.name("import name")
				at := r.pos
				switch kind := r.byte("import kind"); kind {
				case 0x00:
					r.u32("import type index")
				case 0x01:
					r.tableType("import table")
				case 0x02:
					r.limits("import memory")
				case 0x03:
					r.valType("import global type")
					r.byte("import global mutability")
				case 0x04:
					r.byte("import tag attribute")
					r.u32("import tag type index")
				default:
					r.fail(at, "import %d: invalid kind 0x%02x", i, kind)
				}
			}
		case wasmSecFunction:
			for i, n := 0, r.count(1, "function"); i < n && r.err == nil; i++ {
				r.u32("function type index")
			}
		case wasmSecTable:
			for i, n := 0, r.count(2, "table"); i < n && r.err == nil; i++ {
				r.tableType("table")
			}
		case wasmSecMemory:
			for i, n := 0, r.count(2, "memory"); i < n && r.err == nil; i++ {
				r.limits("memory")
			}
		case wasmSecGlobal:
			for i, n := 0, r.count(3, "global"); i < n && r.err == nil; i++ {
				r.valType("global type")
				r.byte("global mutability")
				r.constExpr("global initializer")
			}
		case wasmSecExport:
			for i, n := 0, r.count(3, "export"); i < n && r.err == nil; i++ {
				at := r.pos
				name := r.name("export name")
				kind := r.byte("export kind")
				r.u32("export index")
				if r.err == nil {
					m.exports = append(m.exports, wasmExport{name: name, kind: kind, off: at})
				}
			}
		case wasmSecStart:
			r.u32("start function index")
		case wasmSecElement:
			for i, n := 0, r.count(2, "element segment"); i < n && r.err == nil; i++ {
				wasmElement(r)
			}
		case wasmSecDataCount:
			r.u32("data count")
		case wasmSecCode:
			for i, n := 0, r.count(2, "function body"); i < n && r.err == nil; i++ {
				at := r.pos
				bsize := r.u32("function body size")
				if r.err != nil {
					break
				}
				if uint64(bsize) > uint64(r.end-r.pos) || bsize == 0 {
					r.fail(at, "function body %d: size %d does not fit in the %d bytes left of the code section", i, bsize, r.end-r.pos)
					break
				}
				m.bodies = append(m.bodies, at)
				body := &wasmReader{b: b, pos: r.pos, end: r.pos + int(bsize)}
				fn := 0
				for j, k := 0, body.count(2, "local declaration"); j < k && body.err == nil; j++ {
					lat := body.pos
					c := body.u32("local count")
					body.valType("local type")
					if body.err == nil && uint64(fn)+uint64(c) > wasmMaxLocals {
						body.fail(lat, "function body %d declares more than %d locals", i, wasmMaxLocals)
					}
					fn += int(c)
				}
				if body.err != nil {
					return nil, body.err
				}
				if locals += fn; locals > budget {
					return nil, &wasmScanError{at, fmt.Sprintf("function body %d: the module declares more than %d locals in all", i, budget)}
				}
				r.pos = body.end
			}
		case wasmSecData:
			for i, n := 0, r.count(2, "data segment"); i < n && r.err == nil; i++ {
				at := r.pos
				switch prefix := r.u32("data segment kind"); prefix {
				case 0:
					r.constExpr("data segment offset")
				case 1:
				case 2:
					r.u32("data segment memory index")
					r.constExpr("data segment offset")
				default:
					r.fail(at, "data segment %d: invalid kind %d", i, prefix)
				}
				r.skip(int(r.count(1, "data segment byte")), "data segment bytes")
			}
		case wasmSecTag:
			// wazero rejects tags (exception handling is not enabled) before
			// reading them.
			r.pos = r.end
		}
		if r.err != nil {
			return nil, r.err
		}
		if r.pos != r.end {
			return nil, &wasmScanError{r.pos, fmt.Sprintf("%s section: its content ends at byte %d, but its size says byte %d", sname, r.pos, r.end)}
		}
		pos = sec.end
	}
	return m, nil
}

func wasmFuncType(r *wasmReader) {
	at := r.pos
	if c := r.byte("function type"); c != 0x60 {
		r.fail(at, "invalid function type form 0x%02x, want 0x60", c)
		return
	}
	for i, n := 0, r.count(1, "parameter"); i < n && r.err == nil; i++ {
		r.valType("parameter type")
	}
	for i, n := 0, r.count(1, "result"); i < n && r.err == nil; i++ {
		r.valType("result type")
	}
}

func wasmElement(r *wasmReader) {
	at := r.pos
	prefix := r.u32("element segment kind")
	if r.err != nil {
		return
	}
	if prefix > 7 {
		r.fail(at, "invalid element segment kind %d", prefix)
		return
	}
	if prefix&2 != 0 && prefix&1 == 0 { // 2, 6: explicit table index
		r.u32("element table index")
	}
	if prefix&1 == 0 { // 0, 2, 4, 6: active
		r.constExpr("element offset")
	}
	if prefix&4 == 0 {
		if prefix != 0 {
			r.byte("element kind")
		}
		for i, n := 0, r.count(1, "element function index"); i < n && r.err == nil; i++ {
			r.u32("element function index")
		}
		return
	}
	if prefix != 4 {
		if c := r.byte("element reference type"); c == 0x63 || c == 0x64 {
			r.skipLEB(5, "element heap type")
		}
	}
	for i, n := 0, r.count(2, "element expression"); i < n && r.err == nil; i++ {
		r.constExpr("element expression")
	}
}

// wasmFuncErr matches wazero's "invalid function[N]" validation errors.
var wasmFuncErr = regexp.MustCompile(`^invalid function\[(\d+)\]`)

// wasmErrorSections name the section that wazero errors starting with
// these words are about.
var wasmErrorSections = []struct {
	prefix string
	id     int
}{
	{"import[", wasmSecImport},
	{"invalid import[", wasmSecImport},
	{"too many functions", wasmSecFunction},
	{"too many globals", wasmSecGlobal},
	{"global[", wasmSecGlobal},
	{"invalid start function", wasmSecStart},
	{"function and code section have", wasmSecCode},
	{"code count", wasmSecCode},
	{"data count section", wasmSecDataCount},
}

// wasmErrorOffset finds the place a wazero error names: a function body
// or a section.
func wasmErrorOffset(m *wasmModule, msg string) (int, bool) {
	if s := wasmFuncErr.FindStringSubmatch(msg); s != nil {
		if i, err := strconv.Atoi(s[1]); err == nil && i < len(m.bodies) {
			return m.bodies[i], true
		}
		return 0, false
	}
	id := -1
	for i, name := range wasmSectionNames {
		if strings.HasPrefix(msg, "section "+name+":") {
			id = i
		}
	}
	for _, e := range wasmErrorSections {
		if strings.HasPrefix(msg, e.prefix) {
			id = e.id
		}
	}
	if id < 0 && strings.Contains(msg, "export[") {
		id = wasmSecExport
	}
	if id == wasmSecCode && !slices.ContainsFunc(m.sections, func(s wasmSection) bool { return s.id == wasmSecCode }) {
		id = wasmSecFunction
	}
	for _, s := range m.sections {
		if int(s.id) == id {
			return s.start, true
		}
	}
	return 0, false
}

// wasmCompile compiles b, turning a panic inside wazero into an error.
func wasmCompile(ctx context.Context, rt wazero.Runtime, b []byte) (cm wazero.CompiledModule, err error) {
	defer func() {
		if r := recover(); r != nil {
			cm, err = nil, fmt.Errorf("compiler failed: %v", r)
		}
	}()
	return rt.CompileModule(ctx, b)
}

func inspectWASM(name string, b []byte, opts Options) (*Info, error) {
	bad := func(off int, format string, args ...any) (*Info, error) {
		return nil, offsetErr(name, FormatWASM, int64(off), ErrMalformed, format, args...)
	}
	magic := []byte("\x00asm")
	if !bytes.HasPrefix(b, magic[:min(len(b), 4)]) {
		return bad(0, "bad magic number %q, want \"\\x00asm\"", b[:min(len(b), 4)])
	}
	if len(b) < 8 {
		return bad(len(b), "truncated header: %d bytes, the magic number and version are 8", len(b))
	}
	switch v := b[4:8]; {
	case v[0] == 1 && v[1] == 0 && v[2] == 0 && v[3] == 0:
	case v[2] != 0 || v[3] != 0:
		return bad(4, "version field % x: a WebAssembly component or another layer, not a core module", v)
	default:
		return bad(4, "unsupported binary version %d, want 1", uint32(v[0])|uint32(v[1])<<8)
	}
	m, serr := wasmScan(b)
	if serr != nil {
		return bad(serr.off, "%s", serr.reason)
	}

	core := b
	for _, s := range m.sections {
		if s.id == wasmSecCustom {
			core = make([]byte, 0, len(b))
			core = append(core, b[:8]...)
			for _, s := range m.sections {
				if s.id != wasmSecCustom {
					core = append(core, b[s.start:s.end]...)
				}
			}
			break
		}
	}

	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(wasmFeatures))
	defer rt.Close(ctx)
	cm, err := wasmCompile(ctx, rt, core)
	if err != nil {
		msg := err.Error()
		if off, ok := wasmErrorOffset(m, msg); ok {
			return bad(off, "invalid module: %s", msg)
		}
		return nil, fileErr(name, FormatWASM, ErrMalformed, "invalid module: %s", msg)
	}
	defer cm.Close(ctx)

	funcs := cm.ExportedFunctions()
	info := &Info{Version: "1"}
	seen := make(map[string]bool)
	for _, e := range m.exports {
		if e.kind == 0x00 && funcs[e.name] != nil && !seen[e.name] {
			seen[e.name] = true
			info.Entries = append(info.Entries, Entry{Name: e.name, Kind: "function", Offset: int64(e.off), HasOffset: true})
		}
	}
	var rest []string
	for n := range funcs {
		if !seen[n] {
			rest = append(rest, n)
		}
	}
	slices.Sort(rest)
	for _, n := range rest {
		info.Entries = append(info.Entries, Entry{Name: n, Kind: "function"})
	}
	return info, nil
}
