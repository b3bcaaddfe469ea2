package wasm

import (
	"slices"
)

// This file builds small WebAssembly binaries byte by byte, for the ABI
// checks: a valid minimal kernel that each test case bends one way.

type fnType struct{ params, results []byte }

const (
	tI32 = 0x7f
	tI64 = 0x7e
)

type genImport struct {
	module, name string
	kind         byte   // 0 function, 2 memory, 3 global
	typ          fnType // functions
}

type genFunc struct {
	typ  fnType
	body []byte // instructions, without locals and the final end
}

type genExport struct {
	name  string
	kind  byte   // 0 function, 3 global
	fn    string // the function, for kind 0
	index int    // the global's index, for kind 3
}

// genModule describes a module: imports, named functions, exports by
// function name, one memory and optional globals.
type genModule struct {
	imports  []genImport
	funcs    []string // order of definition
	bodies   map[string]genFunc
	exports  []genExport
	memPages uint32
	noMemory bool
	globals  []int32 // mutable i32 globals with these initial values
}

// minimalKernel returns the description of a kernel that passes every
// check under abiTestConfig: inbox at 4096, outbox at 8192 (2 KiB each),
// 16 bytes of state at 65536, layout 1, every export present.
func minimalKernel() *genModule {
	m := &genModule{bodies: map[string]genFunc{}, memPages: 2}
	get := fnType{results: []byte{tI32}}
	i2i := fnType{params: []byte{tI32}, results: []byte{tI32}}
	m.def(fnABIVersion, get, i32Const(1))
	m.def(fnInit, get, i32Const(0))
	m.def(fnInbox, i2i, i32Const(4096))
	m.def(fnOutbox, i2i, i32Const(8192))
	m.def(fnProcess, i2i, i32Const(0))
	m.def(fnStatePtr, get, i32Const(65536))
	m.def(fnStateLen, get, i32Const(16))
	m.def(fnStateLayout, get, i32Const(1))
	return m
}

// def defines (or redefines) function name, exported under its name.
func (m *genModule) def(name string, t fnType, body []byte) {
	if _, ok := m.bodies[name]; !ok {
		m.funcs = append(m.funcs, name)
		m.exports = append(m.exports, genExport{name: name, kind: 0, fn: name})
	}
	m.bodies[name] = genFunc{typ: t, body: body}
}

// drop removes function name and its export.
func (m *genModule) drop(name string) {
	m.funcs = slices.DeleteFunc(m.funcs, func(n string) bool { return n == name })
	m.exports = slices.DeleteFunc(m.exports, func(e genExport) bool { return e.fn == name })
	delete(m.bodies, name)
}

func i32Const(v int32) []byte { return append([]byte{0x41}, sleb(int64(v))...) }

// i32Store stores value at addr: i32.const addr; i32.const value;
// i32.store align=2.
func i32Store(addr, value int32) []byte {
	b := append(i32Const(addr), i32Const(value)...)
	return append(b, 0x36, 0x02, 0x00)
}

func uleb(v uint64) []byte {
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

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func vec(items ...[]byte) []byte {
	b := uleb(uint64(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

func str(s string) []byte { return append(uleb(uint64(len(s))), s...) }

func section(id byte, body []byte) []byte {
	return append(append([]byte{id}, uleb(uint64(len(body)))...), body...)
}

// bytes encodes the module.
func (m *genModule) bytes() []byte {
	var types []fnType
	typeIndex := func(t fnType) int {
		for i, u := range types {
			if slices.Equal(u.params, t.params) && slices.Equal(u.results, t.results) {
				return i
			}
		}
		types = append(types, t)
		return len(types) - 1
	}
	var imports, funcs, codes, exports [][]byte
	index := map[string]int{}
	nImportedFuncs := 0
	for _, im := range m.imports {
		e := append(str(im.module), str(im.name)...)
		switch im.kind {
		case 0:
			e = append(append(e, 0), uleb(uint64(typeIndex(im.typ)))...)
			nImportedFuncs++
		case 2:
			e = append(e, 2, 0, 1)
		case 3:
			e = append(e, 3, tI32, 0)
		}
		imports = append(imports, e)
	}
	for i, name := range m.funcs {
		f := m.bodies[name]
		index[name] = nImportedFuncs + i
		funcs = append(funcs, uleb(uint64(typeIndex(f.typ))))
		body := append(append([]byte{0}, f.body...), 0x0b) // no locals
		codes = append(codes, append(uleb(uint64(len(body))), body...))
	}
	for _, e := range m.exports {
		idx := e.index
		if e.kind == 0 {
			idx = index[e.fn]
		}
		exports = append(exports, append(append(str(e.name), e.kind), uleb(uint64(idx))...))
	}
	if !m.noMemory {
		exports = append(exports, append(append(str("memory"), 2), 0))
	}
	var typeEnc [][]byte
	for _, t := range types {
		typeEnc = append(typeEnc, append(append([]byte{0x60}, vec(bytesOf(t.params)...)...), vec(bytesOf(t.results)...)...))
	}
	out := []byte("\x00asm\x01\x00\x00\x00")
	out = append(out, section(1, vec(typeEnc...))...)
	if len(imports) > 0 {
		out = append(out, section(2, vec(imports...))...)
	}
	out = append(out, section(3, vec(funcs...))...)
	if !m.noMemory {
		out = append(out, section(5, vec(append([]byte{0}, uleb(uint64(m.memPages))...)))...)
	}
	if len(m.globals) > 0 {
		var gs [][]byte
		for _, v := range m.globals {
			gs = append(gs, append(append([]byte{tI32, 1}, i32Const(v)...), 0x0b))
		}
		out = append(out, section(6, vec(gs...))...)
	}
	out = append(out, section(7, vec(exports...))...)
	out = append(out, section(10, vec(codes...))...)
	return out
}

func bytesOf(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i, c := range b {
		out[i] = []byte{c}
	}
	return out
}
