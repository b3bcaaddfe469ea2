// Package cudakernels holds example kernels for the hotkernel CUDA
// backend, written against the CUDA kernel ABI version 1 (described in
// hk_cuda.h), and embeds their compiled modules for tests and benchmarks.
//
// The kernels are those of package kernels (examples/kernels/c), for the
// GPU: counter_v1.cu and counter_v2.cu have the messages, state layouts 1
// and 2 (byte for byte), outputs, error codes, migrations and histogram of
// counter_v1.c and counter_v2.c, so that the same accounting tests run on
// both backends; trivial.cu counts messages and bytes like trivial.c, one
// GPU thread per message. The file variants lists the modules built from
// them: each counter with 4 KiB, 1 MiB and 64 MiB of state, and
// counter_v2_broken, which faults (CUDA error 700) where
// counter_v2_broken.wasm traps.
//
// Every module is PTX for sm_52, which the driver compiles for any GPU
// since Maxwell, and CUBINs for sm_80 and sm_90. `go generate
// ./examples/kernels/cuda` rebuilds them with build.sh (clang with the
// nvptx64 target, and ptxas); the output is deterministic.
//
// The same sources build as host C for internal/cudafake, the test double
// of libcuda, which runs them on the CPU.
package cudakernels

//go:generate sh build.sh

import (
	"embed"
	"fmt"
	"slices"
	"strings"
	"sync"
)

//go:embed *.ptx *.cubin *.cu hk_cuda.h variants
var files embed.FS

// Variant says how one module is built: from which source, with which
// preprocessor definitions.
type Variant struct {
	// Name is the module's name, as Names lists it: "counter_v1_1m".
	Name string
	// Source is the name of the .cu file it is built from: "counter_v1.cu".
	Source string
	// Defines are the preprocessor definitions, each "MACRO" or
	// "MACRO=VALUE", in the order given: ["STATE_BYTES=1048576"].
	Defines []string
}

// variants parses the embedded file variants once.
var variants = sync.OnceValue(func() []Variant {
	b, err := files.ReadFile("variants")
	if err != nil {
		panic(err) // embedded: always there
	}
	var vs []Variant
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 2 || !strings.HasSuffix(f[1], ".cu") {
			panic(fmt.Sprintf("cudakernels: variants line %d: want NAME SOURCE.cu [-DFLAG...], found %q", i+1, line))
		}
		v := Variant{Name: f[0], Source: f[1]}
		for _, flag := range f[2:] {
			d, ok := strings.CutPrefix(flag, "-D")
			if !ok || d == "" {
				panic(fmt.Sprintf("cudakernels: variants line %d: flag %q is not -DMACRO[=VALUE]", i+1, flag))
			}
			v.Defines = append(v.Defines, d)
		}
		vs = append(vs, v)
	}
	slices.SortFunc(vs, func(a, b Variant) int { return strings.Compare(a.Name, b.Name) })
	return vs
})

// Variants returns how each module is built, in the order of Names. The
// result is a new slice each time; its Defines are shared and must not be
// modified.
func Variants() []Variant { return slices.Clone(variants()) }

// variant returns the Variant called name, or panics: the set is fixed at
// build time, so a wrong name is a programming error.
func variant(name string) Variant {
	for _, v := range variants() {
		if v.Name == name {
			return v
		}
	}
	panic("cudakernels: no module " + name)
}

// Names returns the names of the embedded modules, without extension, in
// lexical order: "counter_v1", "counter_v1_1m", "counter_v1_64m",
// "counter_v2", ..., "trivial". Each has a PTX and the CUBINs of CUBINArchs.
func Names() []string {
	vs := variants()
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Name
	}
	return names
}

// CUBINArchs returns the SM architectures every module has a CUBIN for:
// "sm_80", "sm_90".
func CUBINArchs() []string { return []string{"sm_80", "sm_90"} }

// read returns the embedded file called file, or panics.
func read(file string) []byte {
	b, err := files.ReadFile(file)
	if err != nil {
		panic(fmt.Sprintf("cudakernels: %v", err)) // every listed module is embedded
	}
	return b
}

// PTX returns the PTX text of the module called name (as Names lists it),
// for sm_52. It panics when there is no such module: the set is fixed at
// build time, so a wrong name is a programming error. The slice is
// shared; do not modify it.
func PTX(name string) []byte {
	return read(variant(name).Name + ".ptx")
}

// CUBIN returns the CUBIN of the module called name for the SM
// architecture arch ("sm_80"), or nil when none was built for arch. It
// panics when there is no module called name. The slice is shared; do not
// modify it.
func CUBIN(name, arch string) []byte {
	v := variant(name)
	b, err := files.ReadFile(v.Name + "." + arch + ".cubin")
	if err != nil {
		return nil
	}
	return b
}

// Source returns the CUDA source (.cu) the module called name is built
// from; it panics when there is no such module. The source includes
// hk_cuda.h, which Header returns. The slice is shared; do not modify it.
func Source(name string) []byte {
	return read(variant(name).Source)
}

// Header returns hk_cuda.h, the header every source includes: the ABI's
// entry point signatures and globals, for device code and for host C.
// The slice is shared; do not modify it.
func Header() []byte { return read("hk_cuda.h") }
