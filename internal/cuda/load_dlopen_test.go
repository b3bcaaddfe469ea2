//go:build linux && !android && (amd64 || arm64)

package cuda

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"
)

const libc = "libc.so.6"

// TestLoadNotCUDA: a library that opens but is not the driver is
// reported by the first function looked up, cuInit, and the error says
// where the path came from.
func TestLoadNotCUDA(t *testing.T) {
	if h, err := purego.Dlopen(libc, purego.RTLD_NOW); err != nil {
		t.Skipf("no %s to stand in for a library that is not the driver: %v", libc, err)
	} else {
		defer purego.Dlclose(h)
	}
	d, err := Load(libc)
	if d != nil || !errors.Is(err, ErrNoDriver) {
		t.Fatalf("Load(%q) = %v, %v; want an ErrNoDriver error", libc, d, err)
	}
	for _, want := range []string{libc, "cuInit", EnvVar} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestBindAPI binds every driver function, in the way Load does, to a
// function of the C library without calling them: purego accepts every
// Go signature, and every field of api is set.
func TestBindAPI(t *testing.T) {
	h, err := purego.Dlopen(libc, purego.RTLD_NOW)
	if err != nil {
		t.Skipf("no %s: %v", libc, err)
	}
	defer purego.Dlclose(h)
	stand, err := purego.Dlsym(h, "abs")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	a, err := bindAPI(func(name string) (uintptr, error) {
		names = append(names, name)
		return stand, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v := reflect.ValueOf(a).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsNil() {
			t.Errorf("api.%s not bound", v.Type().Field(i).Name)
		}
	}
	if v.NumField() != len(names) {
		t.Errorf("%d symbols looked up for %d functions", len(names), v.NumField())
	}
	if names[0] != "cuInit" {
		t.Errorf("first symbol looked up is %s, want cuInit", names[0])
	}
	for _, want := range []string{
		"cuCtxCreate_v2", "cuCtxDestroy_v2", "cuCtxPopCurrent_v2", "cuMemAlloc_v2", "cuMemFree_v2",
		"cuMemAllocHost_v2", "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2", "cuMemcpyHtoDAsync_v2",
		"cuMemcpyDtoHAsync_v2", "cuMemcpyDtoDAsync_v2", "cuModuleGetGlobal_v2",
		"cuStreamDestroy_v2", "cuEventDestroy_v2", "cuDeviceTotalMem_v2", "cuLaunchKernel",
	} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("symbol %s not looked up", want)
		}
	}

	// The first failing lookup ends the binding with its error.
	sentinel := errors.New("lookup failed")
	if a, err := bindAPI(func(name string) (uintptr, error) {
		if name == "cuModuleLoadDataEx" {
			return 0, sentinel
		}
		return stand, nil
	}); a != nil || err != sentinel {
		t.Errorf("bindAPI with a missing symbol = %v, %v", a, err)
	}
	// The optional functions may be missing.
	a, err = bindAPI(func(name string) (uintptr, error) {
		if name == "cuMemHostRegister_v2" || name == "cuMemHostUnregister" {
			return 0, sentinel
		}
		return stand, nil
	})
	if err != nil || a.cuMemHostRegister != nil || a.cuMemHostUnregister != nil || a.cuLaunchKernel == nil {
		t.Errorf("bindAPI without the optional functions: %v", err)
	}
	if _, err := bindAPI(func(string) (uintptr, error) { return 0, nil }); !errors.Is(err, ErrNoDriver) {
		t.Errorf("bindAPI with address 0: %v", err)
	}
}

// TestSyscallArguments calls C functions through the bindings' calling
// path to check how arguments and results travel: memset and memcmp
// stand in for driver functions of the same shapes.
func TestSyscallArguments(t *testing.T) {
	h, err := purego.Dlopen(libc, purego.RTLD_NOW)
	if err != nil {
		t.Skipf("no %s: %v", libc, err)
	}
	defer purego.Dlclose(h)
	// int memcmp(const void*, const void*, size_t): a negative int result
	// survives the conversion of the return register.
	memcmpAddr, err := purego.Dlsym(h, "memcmp")
	if err != nil {
		t.Fatal(err)
	}
	a, b := []byte{1}, []byte{2}
	r, _, _ := purego.SyscallN(memcmpAddr, uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&b[0])), 1)
	if got := result(r); got >= 0 {
		t.Errorf("memcmp(1, 2) through result() = %d, want negative", got)
	}
}
