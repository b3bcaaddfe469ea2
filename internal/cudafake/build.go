package cudafake

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cudakernels "github.com/hotkernel/hotkernel/examples/kernels/cuda"
)

//go:embed c/fake.c
var fakeC []byte

// libName is the file name of the library Build makes.
const libName = "libcuda-fake.so"

// requireToolsEnv, set to 1, turns a missing C compiler into a failure.
const requireToolsEnv = "HOTKERNEL_REQUIRE_TOOLS"

// cflags are the flags of every compilation; the kernels are .cu files,
// compiled as C.
var cflags = []string{"-std=c11", "-O1", "-fPIC", "-Wall"}

// compileTimeout bounds each compiler run.
const compileTimeout = 2 * time.Minute

var built struct {
	once       sync.Once
	lib        string
	warnings   string
	noCompiler error
	err        error
}

// Build compiles the fake library, once per test binary, and returns the
// path of libcuda-fake.so. It is fake.c and every variant of package
// cudakernels (each .cu source compiled as C with -DHK_NAME=<variant> and
// the variant's definitions) linked into one shared library with the C
// compiler: $CC when set (it may hold flags: "gcc -m64"), else cc, else
// gcc.
//
// The library is built in a directory named by a hash of its sources and
// the compiler's identity under the user's cache directory
// (os.UserCacheDir()/hotkernel/cudafake), so later test binaries reuse
// it, or in a new temporary directory when there is no usable cache
// directory. The file is never changed once Build has returned its path.
//
// Without a C compiler Build skips the test (t.Skip), unless
// HOTKERNEL_REQUIRE_TOOLS=1, which makes it fail (t.Fatal); a compiler
// error fails the test. Every later call in the test binary reports the
// same outcome without building again.
func Build(t testing.TB) string {
	t.Helper()
	built.once.Do(func() { built.lib, built.warnings, built.noCompiler, built.err = build() })
	if built.noCompiler != nil {
		if os.Getenv(requireToolsEnv) == "1" {
			t.Fatalf("%v (%s=1)", built.noCompiler, requireToolsEnv)
		}
		t.Skipf("%v; set CC to a C compiler to run this test", built.noCompiler)
	}
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.lib
}

// compiler finds the C compiler and the flags that come with it.
func compiler() (path string, args []string, err error) {
	if cc := strings.Fields(os.Getenv("CC")); len(cc) > 0 {
		p, err := exec.LookPath(cc[0])
		if err != nil {
			return "", nil, fmt.Errorf("cudafake: CC=%q: %v", os.Getenv("CC"), err)
		}
		return p, cc[1:], nil
	}
	for _, name := range []string{"cc", "gcc"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil, nil
		}
	}
	return "", nil, errors.New("cudafake: no C compiler: neither cc nor gcc is on PATH and CC is not set")
}

// unit is one translation unit of the library.
type unit struct {
	object string   // object file name
	source string   // source file name, in the source directory
	flags  []string // -D and -x flags
}

// units lists the translation units: the fake, then one per variant.
func units() []unit {
	us := []unit{{object: "fake.o", source: "fake.c"}}
	for _, v := range cudakernels.Variants() {
		u := unit{object: v.Name + ".o", source: v.Source, flags: []string{"-x", "c", "-DHK_NAME=" + v.Name}}
		for _, d := range v.Defines {
			u.flags = append(u.flags, "-D"+d)
		}
		us = append(us, u)
	}
	return us
}

// sources returns the files the units are compiled from, by name.
func sources() map[string][]byte {
	files := map[string][]byte{"fake.c": fakeC, "hk_cuda.h": cudakernels.Header()}
	for _, v := range cudakernels.Variants() {
		files[v.Source] = cudakernels.Source(v.Name)
	}
	return files
}

// build makes the library, or finds it already made, and returns its
// path and the compiler's warnings.
func build() (lib, warnings string, noCompiler, err error) {
	cc, ccArgs, err := compiler()
	if err != nil {
		return "", "", err, nil
	}
	key, err := cacheKey(cc, ccArgs)
	if err != nil {
		return "", "", nil, err
	}
	dir, final := "", ""
	if cache, err := os.UserCacheDir(); err == nil {
		root := filepath.Join(cache, "hotkernel", "cudafake")
		if os.MkdirAll(root, 0o755) == nil {
			final = filepath.Join(root, key)
			if w, err := os.ReadFile(filepath.Join(final, "warnings.txt")); err == nil {
				if _, err := os.Stat(filepath.Join(final, libName)); err == nil {
					return filepath.Join(final, libName), string(w), nil, nil
				}
			}
			dir, _ = os.MkdirTemp(root, "build-")
		}
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "hotkernel-cudafake-"); err != nil {
			return "", "", nil, fmt.Errorf("cudafake: %v", err)
		}
		final = ""
	}
	warnings, err = compile(cc, ccArgs, dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", "", nil, err
	}
	if final == "" {
		return filepath.Join(dir, libName), warnings, nil, nil
	}
	// Publish the directory whole; another process may have won the race.
	if err := os.Rename(dir, final); err != nil {
		os.RemoveAll(dir)
		if _, serr := os.Stat(filepath.Join(final, libName)); serr != nil {
			return "", "", nil, fmt.Errorf("cudafake: publishing the build: %v", err)
		}
		w, _ := os.ReadFile(filepath.Join(final, "warnings.txt"))
		warnings = string(w)
	}
	return filepath.Join(final, libName), warnings, nil, nil
}

// cacheKey hashes everything the library depends on.
func cacheKey(cc string, ccArgs []string) (string, error) {
	version, err := exec.Command(cc, append(ccArgs, "--version")...).Output()
	if err != nil {
		return "", fmt.Errorf("cudafake: %s --version: %v", cc, err)
	}
	h := sha256.New()
	field := func(b []byte) { fmt.Fprintf(h, "%d:", len(b)); h.Write(b) }
	field([]byte(runtime.GOOS + "/" + runtime.GOARCH))
	field([]byte(cc))
	field([]byte(strings.Join(ccArgs, "\x00")))
	field(version)
	field([]byte(strings.Join(cflags, "\x00")))
	for _, u := range units() {
		field([]byte(u.object + "\x00" + u.source + "\x00" + strings.Join(u.flags, "\x00")))
	}
	files := sources()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		field([]byte(name))
		field(files[name])
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

// compile writes the sources into dir/src, compiles every unit (in
// parallel), links dir/libcuda-fake.so and records the warnings in
// dir/warnings.txt.
func compile(cc string, ccArgs []string, dir string) (string, error) {
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return "", fmt.Errorf("cudafake: %v", err)
	}
	for name, b := range sources() {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			return "", fmt.Errorf("cudafake: %v", err)
		}
	}
	us := units()
	outputs := make([]string, len(us))
	errs := make([]error, len(us))
	var wg sync.WaitGroup
	for i, u := range us {
		wg.Go(func() {
			args := append(append(append([]string{}, ccArgs...), cflags...), "-I", src, "-c", "-o", filepath.Join(dir, u.object))
			args = append(append(args, u.flags...), filepath.Join(src, u.source))
			outputs[i], errs[i] = run(cc, args)
		})
	}
	wg.Wait()
	var warnings strings.Builder
	for i, u := range us {
		if errs[i] != nil {
			return "", fmt.Errorf("cudafake: compiling %s as %s: %v", u.source, u.object, errs[i])
		}
		if outputs[i] != "" {
			fmt.Fprintf(&warnings, "%s (%s):\n%s", u.source, u.object, outputs[i])
		}
	}
	args := append(append([]string{}, ccArgs...), "-shared", "-o", filepath.Join(dir, libName))
	for _, u := range us {
		args = append(args, filepath.Join(dir, u.object))
	}
	out, err := run(cc, append(args, "-lpthread"))
	if err != nil {
		return "", fmt.Errorf("cudafake: linking %s: %v", libName, err)
	}
	if out != "" {
		fmt.Fprintf(&warnings, "link:\n%s", out)
	}
	for _, u := range us {
		os.Remove(filepath.Join(dir, u.object))
	}
	if err := os.WriteFile(filepath.Join(dir, "warnings.txt"), []byte(warnings.String()), 0o644); err != nil {
		return "", fmt.Errorf("cudafake: %v", err)
	}
	return warnings.String(), nil
}

// run runs the compiler and returns what it printed.
func run(cc string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), compileTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, cc, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%v\n%s %s\n%s", err, cc, strings.Join(args, " "), out.String())
	}
	return out.String(), nil
}
