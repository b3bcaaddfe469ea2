package cuda

import (
	"errors"
	"fmt"
	"testing"
)

func TestResultString(t *testing.T) {
	cases := []struct {
		r    Result
		want string
	}{
		{Success, "CUDA_SUCCESS"},
		{ErrInvalidValue, "CUDA_ERROR_INVALID_VALUE"},
		{ErrNoDeviceCode, "CUDA_ERROR_NO_DEVICE"},
		{ErrInvalidPTX, "CUDA_ERROR_INVALID_PTX"},
		{ErrNotFound, "CUDA_ERROR_NOT_FOUND"},
		{ErrNotReady, "CUDA_ERROR_NOT_READY"},
		{ErrIllegalAddress, "CUDA_ERROR_ILLEGAL_ADDRESS"},
		{ErrLaunchFailed, "CUDA_ERROR_LAUNCH_FAILED"},
		{ErrUnknown, "CUDA_ERROR_UNKNOWN"},
		{12345, "CUresult(12345)"},
		{-1, "CUresult(-1)"},
	}
	for _, c := range cases {
		if got := c.r.String(); got != c.want {
			t.Errorf("Result(%d).String() = %q, want %q", int32(c.r), got, c.want)
		}
	}
}

// TestResultNumbers pins the numbers of the codes to cuda.h's.
func TestResultNumbers(t *testing.T) {
	want := map[Result]int32{
		Success: 0, ErrInvalidValue: 1, ErrOutOfMemory: 2, ErrNotInitialized: 3,
		ErrDeinitialized: 4, ErrNoDeviceCode: 100, ErrInvalidDevice: 101,
		ErrInvalidImage: 200, ErrInvalidContext: 201, ErrNoBinaryForGPU: 209,
		ErrInvalidPTX: 218, ErrJITCompilerNotFound: 221, ErrUnsupportedPTXVersion: 222,
		ErrInvalidHandle: 400, ErrNotFound: 500, ErrNotReady: 600,
		ErrIllegalAddress: 700, ErrLaunchOutOfResources: 701, ErrLaunchTimeout: 702,
		ErrHardwareStackError: 714, ErrIllegalInstruction: 715, ErrMisalignedAddress: 716,
		ErrInvalidAddressSpace: 717, ErrInvalidPC: 718, ErrLaunchFailed: 719,
		ErrUnknown: 999,
	}
	for r, n := range want {
		if int32(r) != n {
			t.Errorf("%s = %d, want %d", r, int32(r), n)
		}
	}
	// Every code in the table has a name of the C form and a description.
	for r, info := range results {
		if len(info.name) < 5 || info.text == "" {
			t.Errorf("Result %d: incomplete table entry %+v", int32(r), info)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	cases := []struct {
		e    *Error
		want string
	}{
		{
			&Error{Op: "cuLaunchKernel", Code: ErrIllegalAddress, Name: "CUDA_ERROR_ILLEGAL_ADDRESS", Text: "an illegal memory access was encountered"},
			"cuLaunchKernel: CUDA_ERROR_ILLEGAL_ADDRESS (700): an illegal memory access was encountered",
		},
		{&Error{Op: "cuInit", Code: ErrNoDeviceCode}, "cuInit: CUDA_ERROR_NO_DEVICE (100)"},
		{&Error{Op: "cuFoo", Code: 4242, Text: "new"}, "cuFoo: CUresult(4242) (4242): new"},
		{&Error{Code: ErrNotFound, Name: "N", Text: "t"}, "N (500): t"},
		{nil, "<nil>"},
	}
	for _, c := range cases {
		if got := c.e.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
}

// TestNewErrorWithoutDriver: without a driver, the name and text come
// from the table.
func TestNewErrorWithoutDriver(t *testing.T) {
	var d *Driver
	e := d.newError("cuMemAlloc_v2", ErrOutOfMemory)
	want := "cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY (2): out of memory"
	if e.Error() != want {
		t.Errorf("got %q, want %q", e.Error(), want)
	}
	e = d.newError("cuX", 31337)
	if e.Error() != "cuX: CUresult(31337) (31337)" {
		t.Errorf("unknown code: got %q", e.Error())
	}
	if d.check("cuX", Success) != nil {
		t.Error("check(Success) is not nil")
	}
}

func TestSticky(t *testing.T) {
	sticky := []Result{700, 702, 710, 714, 715, 716, 717, 718, 719, 226, 721, 911}
	for _, r := range sticky {
		e := &Error{Op: "cuStreamSynchronize", Code: r}
		if !r.Sticky() || !e.Sticky() {
			t.Errorf("%s is not sticky", r)
		}
		wrapped := fmt.Errorf("running kernel: %w", e)
		if !IsSticky(wrapped) {
			t.Errorf("IsSticky(wrapped %s) = false", r)
		}
	}
	for _, r := range []Result{Success, ErrInvalidValue, ErrOutOfMemory, ErrNotFound, ErrNotReady, ErrLaunchOutOfResources, ErrInvalidPTX, ErrUnknown, 12345} {
		if r.Sticky() || (&Error{Code: r}).Sticky() || IsSticky(&Error{Code: r}) {
			t.Errorf("%s is sticky", r)
		}
	}
	var nilErr *Error
	if nilErr.Sticky() || IsSticky(nil) || IsSticky(errors.New("x")) || IsSticky(ErrDestroyed) {
		t.Error("non-*Error errors are sticky")
	}
}

func TestCodeOf(t *testing.T) {
	e := &Error{Op: "cuModuleGetFunction", Code: ErrNotFound}
	if got := CodeOf(e); got != ErrNotFound {
		t.Errorf("CodeOf(*Error) = %s", got)
	}
	if got := CodeOf(fmt.Errorf("a: %w", fmt.Errorf("b: %w", e))); got != ErrNotFound {
		t.Errorf("CodeOf(wrapped) = %s", got)
	}
	if got := CodeOf(fmt.Errorf("%w: %w", ErrNoDevice, &Error{Code: ErrNoDeviceCode})); got != ErrNoDeviceCode {
		t.Errorf("CodeOf(double-wrapped) = %s", got)
	}
	for _, err := range []error{nil, errors.New("x"), ErrNoDriver, invalid("op", "bad"), destroyed("op", "stream")} {
		if got := CodeOf(err); got != Success {
			t.Errorf("CodeOf(%v) = %s, want Success", err, got)
		}
	}
}

func TestHelperErrors(t *testing.T) {
	err := destroyed("cuLaunchKernel", "stream")
	if !errors.Is(err, ErrDestroyed) || err.Error() != "cuLaunchKernel: the stream is gone: CUDA object destroyed" {
		t.Errorf("destroyed: %v", err)
	}
	err = invalid("cuMemAlloc_v2", "%d bytes requested", 0)
	if !errors.Is(err, ErrInvalidArgument) || err.Error() != "cuMemAlloc_v2: invalid argument: 0 bytes requested" {
		t.Errorf("invalid: %v", err)
	}
}
