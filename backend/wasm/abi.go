package wasm

import (
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// ABIVersion is the kernel ABI version this host speaks; hk_abi_version
// must return it. docs/kernel-abi.md specifies the ABI.
const ABIVersion = 1

// StateAlign is the alignment, in bytes, that hk_state_ptr must have:
// one WebAssembly page.
const StateAlign = 65536

// Buffer layout: the inbox header is {u32 count; u32 done}, the outbox
// header {u32 used; u32 cap}; a frame is a u32 length, the bytes, and
// zero padding to a multiple of 4.
const (
	inboxHeader  = 8
	outboxHeader = 8
	frameHeader  = 4
)

// Names of the ABI's exports and imports.
const (
	exportMemory     = "memory"
	exportInitialize = "_initialize"
	exportStart      = "_start"
	exportStackPtr   = "__stack_pointer"
	fnABIVersion     = "hk_abi_version"
	fnInit           = "hk_init"
	fnInbox          = "hk_inbox"
	fnOutbox         = "hk_outbox"
	fnProcess        = "hk_process"
	fnStatePtr       = "hk_state_ptr"
	fnStateLen       = "hk_state_len"
	fnStateLayout    = "hk_state_layout"
	fnMigrate        = "hk_migrate"
	fnScratch        = "hk_scratch"
	hostModule       = "hk"
	hostFlush        = "flush"
	hostLog          = "log"
	wasiModule       = "wasi_snapshot_preview1"
)

// signature is a function type: parameter and result value types.
type signature struct {
	params, results []api.ValueType
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64

	sigVoid      = signature{}
	sigGetI32    = signature{results: []api.ValueType{i32}}
	sigI32ToI32  = signature{params: []api.ValueType{i32}, results: []api.ValueType{i32}}
	sigMigrate   = signature{params: []api.ValueType{i32, i64, i32, i32}, results: []api.ValueType{i32}}
	sigI32I32ToV = signature{params: []api.ValueType{i32, i32}}
)

// requiredExports are the functions every kernel exports, in the order
// their absence is reported.
var requiredExports = []struct {
	name string
	sig  signature
}{
	{fnABIVersion, sigGetI32},
	{fnInit, sigGetI32},
	{fnInbox, sigI32ToI32},
	{fnOutbox, sigI32ToI32},
	{fnProcess, sigI32ToI32},
	{fnStatePtr, sigGetI32},
	{fnStateLen, sigGetI32},
	{fnStateLayout, sigGetI32},
}

// optionalExports may be exported; when they are, their types must match.
var optionalExports = map[string]signature{
	fnMigrate:        sigMigrate,
	fnScratch:        sigI32ToI32,
	exportInitialize: sigVoid,
}

// hostImports are the functions of module "hk".
var hostImports = map[string]signature{
	hostFlush: sigVoid,
	hostLog:   sigI32I32ToV,
}

func sigOf(d api.FunctionDefinition) signature {
	return signature{params: d.ParamTypes(), results: d.ResultTypes()}
}

func (s signature) equal(o signature) bool {
	return slices.Equal(s.params, o.params) && slices.Equal(s.results, o.results)
}

// String formats s as "(i32, i64) -> i32", with "()" for no results.
func (s signature) String() string {
	names := func(ts []api.ValueType) string {
		n := make([]string, len(ts))
		for i, t := range ts {
			n[i] = api.ValueTypeName(t)
		}
		return strings.Join(n, ", ")
	}
	res := names(s.results)
	if len(s.results) != 1 {
		res = "(" + res + ")"
	}
	return "(" + names(s.params) + ") -> " + res
}

// moduleABI is what the static checks learned about a module.
type moduleABI struct {
	wasi       bool // imports WASI preview 1
	migrate    bool // exports hk_migrate and hk_scratch
	initialize bool // exports _initialize
}

// checkModule applies the static ABI rules to a compiled module: its
// imports (from the binary and from wazero, for their types) against the
// host's offer, and its exports against the required and optional ones.
// wasiFuncs are the functions of the runtime's WASI host module.
func checkModule(bin []byte, cm wazero.CompiledModule, wasiFuncs map[string]api.FunctionDefinition) (moduleABI, error) {
	var abi moduleABI
	imports, err := scanImports(bin)
	if err != nil {
		return abi, abiErr("", "reading the import section: %v", err)
	}
	for _, im := range imports {
		full := im.module + "." + im.name
		if im.kind != externFunc {
			return abi, abiErr(full, "import of %s %s not allowed: a kernel imports only functions (hk.flush, hk.log, %s.*) and owns its memory", im.kind, full, wasiModule)
		}
	}
	for _, d := range cm.ImportedFunctions() {
		mod, name, _ := d.Import()
		full := mod + "." + name
		var want signature
		switch mod {
		case hostModule:
			s, ok := hostImports[name]
			if !ok {
				return abi, abiErr(full, "import %s not provided: module hk offers only flush and log", full)
			}
			want = s
		case wasiModule:
			w, ok := wasiFuncs[name]
			if !ok {
				return abi, abiErr(full, "import %s not provided: no such WASI preview 1 function", full)
			}
			want = sigOf(w)
			abi.wasi = true
		default:
			return abi, abiErr(full, "import %s not allowed: a kernel may import only hk.flush, hk.log and %s functions", full, wasiModule)
		}
		if got := sigOf(d); !got.equal(want) {
			return abi, abiErr(full, "import %s has type %s, want %s", full, got, want)
		}
	}

	mems := cm.ExportedMemories()
	if _, ok := mems[exportMemory]; !ok {
		return abi, abiErr(exportMemory, "export memory missing: a kernel exports its linear memory as \"memory\"")
	}
	exports := cm.ExportedFunctions()
	if _, ok := exports[exportStart]; ok {
		return abi, abiErr(exportStart, "export _start found: the module is a WASI command; a kernel is a reactor (Go: go build -buildmode=c-shared; C: -Wl,--no-entry)")
	}
	for _, r := range requiredExports {
		d, ok := exports[r.name]
		if !ok {
			return abi, abiErr(r.name, "export %s missing", r.name)
		}
		if got := sigOf(d); !got.equal(r.sig) {
			return abi, abiErr(r.name, "export %s has type %s, want %s", r.name, got, r.sig)
		}
	}
	names := make([]string, 0, len(optionalExports))
	for n := range optionalExports {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d, ok := exports[n]
		if !ok {
			continue
		}
		if got, want := sigOf(d), optionalExports[n]; !got.equal(want) {
			return abi, abiErr(n, "export %s has type %s, want %s", n, got, want)
		}
	}
	_, hasMigrate := exports[fnMigrate]
	_, hasScratch := exports[fnScratch]
	if hasMigrate && !hasScratch {
		return abi, abiErr(fnScratch, "export hk_scratch missing: a kernel that exports hk_migrate must export hk_scratch")
	}
	_, abi.initialize = exports[exportInitialize]
	abi.migrate = hasMigrate
	return abi, nil
}

// externKind is the kind of an import, as the binary encodes it.
type externKind byte

const (
	externFunc   externKind = 0
	externTable  externKind = 1
	externMemory externKind = 2
	externGlobal externKind = 3
	externTag    externKind = 4
)

func (k externKind) String() string {
	switch k {
	case externFunc:
		return "function"
	case externTable:
		return "table"
	case externMemory:
		return "memory"
	case externGlobal:
		return "global"
	case externTag:
		return "tag"
	}
	return "kind " + strconv.Itoa(int(k))
}

type importEntry struct {
	module, name string
	kind         externKind
}

var errTruncated = errors.New("truncated")

// scanImports lists the imports of a WebAssembly binary: module, name and
// kind. It reads only the section headers and the import section, and
// returns an error, never panics, on malformed input.
func scanImports(b []byte) ([]importEntry, error) {
	r := reader{b: b}
	magic, err := r.bytes(8)
	if err != nil || string(magic[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary")
	}
	for !r.done() {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		body, err := r.bytes(int(size))
		if err != nil {
			return nil, err
		}
		if id == 2 {
			return parseImports(body)
		}
	}
	return nil, nil
}

func parseImports(b []byte) ([]importEntry, error) {
	r := reader{b: b}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	if int(n) > len(b) { // every entry takes at least one byte
		return nil, errTruncated
	}
	out := make([]importEntry, 0, n)
	for range n {
		var e importEntry
		if e.module, err = r.name(); err != nil {
			return nil, err
		}
		if e.name, err = r.name(); err != nil {
			return nil, err
		}
		k, err := r.byte()
		if err != nil {
			return nil, err
		}
		e.kind = externKind(k)
		switch e.kind {
		case externFunc:
			_, err = r.u32()
		case externTable:
			if _, err = r.byte(); err == nil {
				err = r.limits()
			}
		case externMemory:
			err = r.limits()
		case externGlobal:
			_, err = r.bytes(2)
		case externTag:
			if _, err = r.byte(); err == nil {
				_, err = r.u32()
			}
		default:
			return nil, errors.New("unknown import kind")
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// reader decodes the parts of the binary format scanImports needs.
type reader struct {
	b   []byte
	off int
}

func (r *reader) done() bool { return r.off >= len(r.b) }

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, errTruncated
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s, nil
}

// u32 reads an unsigned LEB128 number of at most 32 bits.
func (r *reader) u32() (uint32, error) {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errors.New("integer too long")
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	s, err := r.bytes(int(n))
	return string(s), err
}

// limits skips a limits encoding: flags, min, and max when flags say so.
// The 64-bit forms (memory64) use the same LEB128 bytes, longer.
func (r *reader) limits() error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	skip := func() error {
		for range 10 {
			c, err := r.byte()
			if err != nil {
				return err
			}
			if c&0x80 == 0 {
				return nil
			}
		}
		return errors.New("integer too long")
	}
	if err := skip(); err != nil {
		return err
	}
	if flags&1 != 0 {
		return skip()
	}
	return nil
}
