package cudakernels

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hotkernel/hotkernel/code"
	"github.com/hotkernel/hotkernel/internal/ptxas"
)

// want is what the ABI requires of each module: its globals and entries.
type want struct {
	stateLen  uint64
	layout    uint32
	maxOutput uint32
	block     uint32
	entries   []string // in lexical order
}

var counterEntries = []string{"hk_init", "hk_migrate", "hk_process"}

var modules = map[string]want{
	"counter_v1":        {4096, 1, 16, 0, counterEntries},
	"counter_v1_1m":     {1 << 20, 1, 16, 0, counterEntries},
	"counter_v1_64m":    {64 << 20, 1, 16, 0, counterEntries},
	"counter_v2":        {4096, 2, 16, 0, counterEntries},
	"counter_v2_1m":     {1 << 20, 2, 16, 0, counterEntries},
	"counter_v2_64m":    {64 << 20, 2, 16, 0, counterEntries},
	"counter_v2_broken": {4096, 2, 16, 0, counterEntries},
	"trivial":           {16, 1, 0, 256, []string{"hk_init", "hk_process"}},
}

// The ABI's parameter types of each entry point, in order.
var entryParams = map[string][]string{
	"hk_process": {".u64", ".u64", ".u64", ".u64", ".u32", ".u64", ".u64"},
	"hk_init":    {".u64", ".u64"},
	"hk_migrate": {".u64", ".u64", ".u64", ".u64", ".u32", ".u64", ".u64"},
}

func TestNames(t *testing.T) {
	names := Names()
	want := slices.Sorted(func(yield func(string) bool) {
		for n := range modules {
			if !yield(n) {
				return
			}
		}
	})
	if !slices.Equal(names, want) {
		t.Fatalf("Names() = %q, want %q", names, want)
	}
	// Every embedded module is listed in variants, and nothing else is
	// embedded.
	ptx, _ := fs.Glob(files, "*.ptx")
	cubins, _ := fs.Glob(files, "*.cubin")
	var wantPTX, wantCUBIN []string
	for _, n := range names {
		wantPTX = append(wantPTX, n+".ptx")
		for _, a := range CUBINArchs() {
			wantCUBIN = append(wantCUBIN, n+"."+a+".cubin")
		}
	}
	slices.Sort(wantCUBIN)
	if !slices.Equal(ptx, wantPTX) {
		t.Errorf("embedded PTX %q, want %q", ptx, wantPTX)
	}
	if !slices.Equal(cubins, wantCUBIN) {
		t.Errorf("embedded CUBINs %q, want %q", cubins, wantCUBIN)
	}
}

func TestVariants(t *testing.T) {
	vs := Variants()
	if len(vs) != len(modules) {
		t.Fatalf("%d variants, want %d", len(vs), len(modules))
	}
	for _, v := range vs {
		src := Source(v.Name)
		if !bytes.Equal(src, read(v.Source)) {
			t.Errorf("%s: Source is not %s", v.Name, v.Source)
		}
		if !bytes.Contains(src, []byte(`#include "hk_cuda.h"`)) {
			t.Errorf("%s: %s does not include hk_cuda.h", v.Name, v.Source)
		}
		broken := slices.Contains(v.Defines, "BROKEN")
		if broken != (v.Name == "counter_v2_broken") {
			t.Errorf("%s: defines %q", v.Name, v.Defines)
		}
	}
	if !bytes.Contains(Header(), []byte("HK_GLOBALS")) {
		t.Error("Header() is not hk_cuda.h")
	}
	// Variants returns a copy.
	vs[0].Name = "changed"
	if Variants()[0].Name == "changed" {
		t.Error("Variants shares its slice")
	}
}

func TestUnknownNamePanics(t *testing.T) {
	for fn, call := range map[string]func(){
		"PTX":    func() { PTX("nope") },
		"CUBIN":  func() { CUBIN("nope", "sm_80") },
		"Source": func() { Source("nope") },
	} {
		func() {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(r.(string), "no module nope") {
					t.Errorf("%s(unknown) recovered %v, want a panic naming the module", fn, r)
				}
			}()
			call()
		}()
	}
	if b := CUBIN("trivial", "sm_75"); b != nil {
		t.Errorf("CUBIN for an architecture not built: %d bytes, want nil", len(b))
	}
}

// ptxGlobal matches a global definition as clang writes it, with or
// without an initializer (a zero global has none).
var ptxGlobal = regexp.MustCompile(`(?m)^\.visible \.global (?:\.align \d+ )?(\.[a-z0-9]+) (\w+)(?: = (\d+))?;$`)

// ptxEntry matches an entry point and its parameter list.
var ptxEntry = regexp.MustCompile(`(?s)\.visible \.entry (\w+)\((.*?)\)`)

var ptxParam = regexp.MustCompile(`\.param (\.[a-z0-9]+) \w+`)

type global struct {
	typ   string
	value uint64
}

// globals returns the module-scope globals of ptx by name.
func globals(t *testing.T, ptx string) map[string]global {
	t.Helper()
	gs := map[string]global{}
	for _, m := range ptxGlobal.FindAllStringSubmatch(ptx, -1) {
		var v uint64
		if m[3] != "" {
			var err error
			if v, err = strconv.ParseUint(m[3], 10, 64); err != nil {
				t.Fatal(err)
			}
		}
		gs[m[2]] = global{m[1], v}
	}
	return gs
}

func TestPTXGlobals(t *testing.T) {
	for name, w := range modules {
		gs := globals(t, string(PTX(name)))
		want := map[string]global{
			"hk_abi":          {".u32", 1},
			"hk_state_len":    {".u64", w.stateLen},
			"hk_state_layout": {".u32", uint64(w.layout)},
			"hk_max_output":   {".u32", uint64(w.maxOutput)},
			"hk_block":        {".u32", uint64(w.block)},
		}
		for g, wg := range want {
			if got, ok := gs[g]; !ok || got != wg {
				t.Errorf("%s: global %s = %+v (defined: %v), want %+v", name, g, got, ok, wg)
			}
		}
		if len(gs) != len(want) {
			t.Errorf("%s: globals %v, want only those of the ABI", name, gs)
		}
	}
}

func TestPTXEntries(t *testing.T) {
	for name, w := range modules {
		ptx := string(PTX(name))
		var names []string
		for _, m := range ptxEntry.FindAllStringSubmatch(ptx, -1) {
			names = append(names, m[1])
			var types []string
			for _, p := range ptxParam.FindAllStringSubmatch(m[2], -1) {
				types = append(types, p[1])
			}
			if want := entryParams[m[1]]; !slices.Equal(types, want) {
				t.Errorf("%s: %s has parameters %q, want %q", name, m[1], types, want)
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, w.entries) {
			t.Errorf("%s: entries %q, want %q", name, names, w.entries)
		}
		// No calls out of the module: nothing the driver would have to
		// link (memcpy, printf, a libdevice function).
		if strings.Contains(ptx, ".extern") || strings.Contains(ptx, "call") {
			t.Errorf("%s: the PTX declares or calls external functions", name)
		}
	}
}

func TestPTXValidates(t *testing.T) {
	for name, w := range modules {
		for _, entry := range w.entries {
			info, err := code.Validate(code.FromPTX(string(PTX(name)), entry), code.Options{Name: name + ".ptx"})
			if err != nil {
				t.Errorf("%s, entry %s: %v", name, entry, err)
				continue
			}
			if got := slices.Sorted(slices.Values(info.EntryNames())); !slices.Equal(got, w.entries) {
				t.Errorf("%s: code.Validate found entries %q, want %q", name, got, w.entries)
			}
			if info.Arch != "sm_52" {
				t.Errorf("%s: .target %s, want sm_52", name, info.Arch)
			}
			major, minor, _ := strings.Cut(info.Version, ".")
			ma, _ := strconv.Atoi(major)
			mi, _ := strconv.Atoi(minor)
			if ma > 7 || ma == 7 && mi > 8 {
				t.Errorf("%s: .version %s, newer than ptxas 11.8 reads (7.8)", name, info.Version)
			}
		}
	}
}

// findPTXAS returns the path of ptxas, or skips the test, or fails it when
// HOTKERNEL_REQUIRE_TOOLS=1.
func findPTXAS(t *testing.T) string {
	t.Helper()
	p, err := ptxas.Find("")
	if err != nil {
		if os.Getenv("HOTKERNEL_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%v (HOTKERNEL_REQUIRE_TOOLS=1)", err)
		}
		t.Skipf("%v; set %s to run this test", err, ptxas.EnvVar)
	}
	return p
}

func TestPTXAssembles(t *testing.T) {
	path := findPTXAS(t)
	for _, name := range Names() {
		for _, arch := range CUBINArchs() {
			t.Run(name+"/"+arch, func(t *testing.T) {
				t.Parallel()
				cubin, diags, err := ptxas.Assemble(context.Background(), path, PTX(name), arch, name+".ptx")
				if err != nil {
					t.Fatalf("%v %v", err, diags)
				}
				for _, d := range diags {
					if d.Severity == "warning" || d.IsError() {
						t.Errorf("ptxas: %v", d)
					}
				}
				info, err := code.Inspect(code.FormatCUBIN, cubin, code.Options{Name: name + "." + arch + ".cubin"})
				if err != nil {
					t.Fatal(err)
				}
				if info.Arch != arch {
					t.Errorf("assembled for %s, the CUBIN says %s", arch, info.Arch)
				}
			})
		}
	}
}

func TestCUBINs(t *testing.T) {
	for name, w := range modules {
		for _, arch := range CUBINArchs() {
			b := CUBIN(name, arch)
			if b == nil {
				t.Errorf("%s: no CUBIN for %s", name, arch)
				continue
			}
			for _, entry := range w.entries {
				info, err := code.Validate(code.FromCUBIN(b, entry), code.Options{Name: name + "." + arch + ".cubin", Arch: arch})
				if err != nil {
					t.Errorf("%s %s, entry %s: %v", name, arch, entry, err)
					continue
				}
				if info.Arch != arch {
					t.Errorf("%s.%s.cubin: architecture %s", name, arch, info.Arch)
				}
				if got := slices.Sorted(slices.Values(info.EntryNames())); !slices.Equal(got, w.entries) {
					t.Errorf("%s.%s.cubin: entries %q, want %q", name, arch, got, w.entries)
				}
			}
		}
	}
}
