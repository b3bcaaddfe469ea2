// Package kernels holds example kernels for the hotkernel WebAssembly
// backend, written against the kernel ABI (docs/kernel-abi.md), and embeds
// their compiled modules for tests and benchmarks.
//
// The sources sit beside the modules. In c/: counter_v1.c and
// counter_v2.c (the same counter with state layouts 1 and 2, each
// migrating the other's state), built with 4 KiB, 1 MiB and 16 MiB of
// state; trivial.c (the cheapest handler); hostile.c (traps, error codes,
// endless loops, memory bombs on request); big.c (over 2 MB of code); and
// hk.h, the C side of the ABI. In counter_go/: the layout-1 counter
// written in Go, a WASI reactor.
//
// `go generate ./examples/kernels` rebuilds every module with build.sh
// (clang with wasm-ld, and Go); the output is deterministic.
package kernels

//go:generate sh build.sh

import (
	"embed"
	"io/fs"
	"slices"
	"strings"
)

//go:embed c/*.wasm counter_go/*.wasm
var modules embed.FS

// dirs are the directories of modules, searched in order.
var dirs = []string{"c", "counter_go"}

// Names returns the names of the embedded modules, without the .wasm
// extension, in lexical order: "big", "counter_go", "counter_v1",
// "counter_v1_16m", ...
func Names() []string {
	var names []string
	for _, d := range dirs {
		entries, err := fs.ReadDir(modules, d)
		if err != nil {
			panic(err) // the embedded directories always read
		}
		for _, e := range entries {
			names = append(names, strings.TrimSuffix(e.Name(), ".wasm"))
		}
	}
	slices.Sort(names)
	return names
}

// Wasm returns the bytes of the module called name (as Names lists it).
// It panics when there is no such module: the set is fixed at build time,
// so a wrong name is a programming error. The slice is shared; do not
// modify it.
func Wasm(name string) []byte {
	for _, d := range dirs {
		if b, err := modules.ReadFile(d + "/" + name + ".wasm"); err == nil {
			return b
		}
	}
	panic("kernels: no module " + name + ".wasm")
}
