package cuda

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors. Errors returned by this package wrap at most one of
// them; test with errors.Is.
var (
	// ErrNoDriver: the driver library could not be opened, it lacks one of
	// the functions this package needs, or the binding is not available
	// on this GOOS/GOARCH. Load's error names the library path and, for a
	// missing function, the symbol.
	ErrNoDriver = errors.New("no CUDA driver")

	// ErrNoDevice: cuInit reported CUDA_ERROR_NO_DEVICE, or a device
	// ordinal is outside the range the driver reports (including when it
	// reports none).
	ErrNoDevice = errors.New("no CUDA device")

	// ErrDestroyed: a method was called on a Context after Destroy, or on
	// a Stream, Event or Module after its own Destroy or Unload. The
	// error names the driver function that was not called and the object
	// that was gone.
	ErrDestroyed = errors.New("CUDA object destroyed")

	// ErrInvalidArgument: a method rejected its arguments before calling
	// the driver (a zero size, a nil object, an object of another
	// context, too many kernel parameters, a slice not from AllocHost).
	// It is distinct from the driver's own ErrInvalidValue result, which
	// arrives as an *Error.
	ErrInvalidArgument = errors.New("invalid argument")
)

// Result is a CUDA driver API status code (CUresult). The zero value is
// Success. Codes the driver returns that this package does not name are
// still carried unchanged.
type Result int32

// CUresult values, with the numbers of the CUDA driver API (cuda.h).
// The Go names drop the CUDA_ERROR_ prefix; String gives the C name.
// ErrNoDeviceCode is CUDA_ERROR_NO_DEVICE, named so as not to clash
// with the sentinel ErrNoDevice.
const (
	Success                        Result = 0
	ErrInvalidValue                Result = 1
	ErrOutOfMemory                 Result = 2
	ErrNotInitialized              Result = 3
	ErrDeinitialized               Result = 4
	ErrStubLibrary                 Result = 34
	ErrDeviceUnavailable           Result = 46
	ErrNoDeviceCode                Result = 100
	ErrInvalidDevice               Result = 101
	ErrDeviceNotLicensed           Result = 102
	ErrInvalidImage                Result = 200
	ErrInvalidContext              Result = 201
	ErrNoBinaryForGPU              Result = 209
	ErrECCUncorrectable            Result = 214
	ErrContextAlreadyInUse         Result = 216
	ErrInvalidPTX                  Result = 218
	ErrNVLinkUncorrectable         Result = 220
	ErrJITCompilerNotFound         Result = 221
	ErrUnsupportedPTXVersion       Result = 222
	ErrJITCompilationDisabled      Result = 223
	ErrContained                   Result = 226
	ErrInvalidSource               Result = 300
	ErrFileNotFound                Result = 301
	ErrSharedObjectSymbolNotFound  Result = 302
	ErrSharedObjectInitFailed      Result = 303
	ErrOperatingSystem             Result = 304
	ErrInvalidHandle               Result = 400
	ErrIllegalState                Result = 401
	ErrNotFound                    Result = 500
	ErrNotReady                    Result = 600
	ErrIllegalAddress              Result = 700
	ErrLaunchOutOfResources        Result = 701
	ErrLaunchTimeout               Result = 702
	ErrLaunchIncompatibleTexturing Result = 703
	ErrPrimaryContextActive        Result = 708
	ErrContextIsDestroyed          Result = 709
	ErrAssert                      Result = 710
	ErrHostMemoryAlreadyRegistered Result = 712
	ErrHostMemoryNotRegistered     Result = 713
	ErrHardwareStackError          Result = 714
	ErrIllegalInstruction          Result = 715
	ErrMisalignedAddress           Result = 716
	ErrInvalidAddressSpace         Result = 717
	ErrInvalidPC                   Result = 718
	ErrLaunchFailed                Result = 719
	ErrCooperativeLaunchTooLarge   Result = 720
	ErrTensorMemoryLeak            Result = 721
	ErrNotPermitted                Result = 800
	ErrNotSupported                Result = 801
	ErrSystemNotReady              Result = 802
	ErrSystemDriverMismatch        Result = 803
	ErrCompatNotSupportedOnDevice  Result = 804
	ErrTimeout                     Result = 909
	ErrExternalDevice              Result = 911
	ErrUnknown                     Result = 999
)

// resultInfo is the C name and a short description of a CUresult, used
// when the driver cannot describe a code itself.
type resultInfo struct {
	name, text string
}

var results = map[Result]resultInfo{
	Success:                        {"CUDA_SUCCESS", "no error"},
	ErrInvalidValue:                {"CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	ErrOutOfMemory:                 {"CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	ErrNotInitialized:              {"CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	ErrDeinitialized:               {"CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
	ErrStubLibrary:                 {"CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
	ErrDeviceUnavailable:           {"CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA-capable device(s) is/are busy or unavailable"},
	ErrNoDeviceCode:                {"CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
	ErrInvalidDevice:               {"CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
	ErrDeviceNotLicensed:           {"CUDA_ERROR_DEVICE_NOT_LICENSED", "device doesn't have valid Grid license"},
	ErrInvalidImage:                {"CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
	ErrInvalidContext:              {"CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
	ErrNoBinaryForGPU:              {"CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
	ErrECCUncorrectable:            {"CUDA_ERROR_ECC_UNCORRECTABLE", "uncorrectable ECC error encountered"},
	ErrContextAlreadyInUse:         {"CUDA_ERROR_CONTEXT_ALREADY_IN_USE", "context already in use"},
	ErrInvalidPTX:                  {"CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
	ErrNVLinkUncorrectable:         {"CUDA_ERROR_NVLINK_UNCORRECTABLE", "uncorrectable NVLink error detected during the execution"},
	ErrJITCompilerNotFound:         {"CUDA_ERROR_JIT_COMPILER_NOT_FOUND", "PTX JIT compiler library not found"},
	ErrUnsupportedPTXVersion:       {"CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "the provided PTX was compiled with an unsupported toolchain"},
	ErrJITCompilationDisabled:      {"CUDA_ERROR_JIT_COMPILATION_DISABLED", "PTX JIT compilation was disabled"},
	ErrContained:                   {"CUDA_ERROR_CONTAINED", "an exception on the device was contained by the GPU's error containment"},
	ErrInvalidSource:               {"CUDA_ERROR_INVALID_SOURCE", "device kernel source is invalid"},
	ErrFileNotFound:                {"CUDA_ERROR_FILE_NOT_FOUND", "file not found"},
	ErrSharedObjectSymbolNotFound:  {"CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND", "shared object symbol not found"},
	ErrSharedObjectInitFailed:      {"CUDA_ERROR_SHARED_OBJECT_INIT_FAILED", "shared object initialization failed"},
	ErrOperatingSystem:             {"CUDA_ERROR_OPERATING_SYSTEM", "OS call failed or operation not supported on this OS"},
	ErrInvalidHandle:               {"CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
	ErrIllegalState:                {"CUDA_ERROR_ILLEGAL_STATE", "the operation cannot be performed in the present state"},
	ErrNotFound:                    {"CUDA_ERROR_NOT_FOUND", "named symbol not found"},
	ErrNotReady:                    {"CUDA_ERROR_NOT_READY", "device not ready"},
	ErrIllegalAddress:              {"CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
	ErrLaunchOutOfResources:        {"CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
	ErrLaunchTimeout:               {"CUDA_ERROR_LAUNCH_TIMEOUT", "the launch timed out and was terminated"},
	ErrLaunchIncompatibleTexturing: {"CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING", "launch uses incompatible texturing mode"},
	ErrPrimaryContextActive:        {"CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE", "primary context active"},
	ErrContextIsDestroyed:          {"CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
	ErrAssert:                      {"CUDA_ERROR_ASSERT", "device-side assert triggered"},
	ErrHostMemoryAlreadyRegistered: {"CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED", "part or all of the requested memory range is already mapped"},
	ErrHostMemoryNotRegistered:     {"CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED", "pointer does not correspond to a registered memory region"},
	ErrHardwareStackError:          {"CUDA_ERROR_HARDWARE_STACK_ERROR", "hardware stack error"},
	ErrIllegalInstruction:          {"CUDA_ERROR_ILLEGAL_INSTRUCTION", "an illegal instruction was encountered"},
	ErrMisalignedAddress:           {"CUDA_ERROR_MISALIGNED_ADDRESS", "misaligned address"},
	ErrInvalidAddressSpace:         {"CUDA_ERROR_INVALID_ADDRESS_SPACE", "operation not supported on global/shared address space"},
	ErrInvalidPC:                   {"CUDA_ERROR_INVALID_PC", "invalid program counter"},
	ErrLaunchFailed:                {"CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
	ErrCooperativeLaunchTooLarge:   {"CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE", "too many blocks in cooperative launch"},
	ErrTensorMemoryLeak:            {"CUDA_ERROR_TENSOR_MEMORY_LEAK", "tensor memory not completely freed"},
	ErrNotPermitted:                {"CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
	ErrNotSupported:                {"CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
	ErrSystemNotReady:              {"CUDA_ERROR_SYSTEM_NOT_READY", "system not yet initialized"},
	ErrSystemDriverMismatch:        {"CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "system has unsupported display driver / cuda driver combination"},
	ErrCompatNotSupportedOnDevice:  {"CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE", "forward compatibility was attempted on non supported HW"},
	ErrTimeout:                     {"CUDA_ERROR_TIMEOUT", "wait operation timed out"},
	ErrExternalDevice:              {"CUDA_ERROR_EXTERNAL_DEVICE", "an error occurred on an external device"},
	ErrUnknown:                     {"CUDA_ERROR_UNKNOWN", "unknown error"},
}

// String returns the C name of the code, such as
// "CUDA_ERROR_ILLEGAL_ADDRESS", from a table in this package, so it works
// without a driver. A code not in the table gives "CUresult(N)".
func (r Result) String() string {
	if info, ok := results[r]; ok {
		return info.name
	}
	return "CUresult(" + strconv.Itoa(int(r)) + ")"
}

// description is the table's text for r, or "" for a code not in it.
func (r Result) description() string {
	return results[r].text
}

// Sticky reports whether r is one of the errors after which the context
// it happened in cannot be used again: every later call in that context
// returns the same error, and only destroying the context (Context.Destroy)
// and creating a new one gets work running again.
//
// The codes are those whose description in the CUDA driver API reference
// (the CUresult enumeration, cuda.h) says that any further CUDA work
// returns the same error, or that the context cannot be used anymore and
// must be destroyed:
//
//	700 CUDA_ERROR_ILLEGAL_ADDRESS
//	702 CUDA_ERROR_LAUNCH_TIMEOUT
//	710 CUDA_ERROR_ASSERT
//	714 CUDA_ERROR_HARDWARE_STACK_ERROR
//	715 CUDA_ERROR_ILLEGAL_INSTRUCTION
//	716 CUDA_ERROR_MISALIGNED_ADDRESS
//	717 CUDA_ERROR_INVALID_ADDRESS_SPACE
//	718 CUDA_ERROR_INVALID_PC
//	719 CUDA_ERROR_LAUNCH_FAILED
//	226 CUDA_ERROR_CONTAINED
//	721 CUDA_ERROR_TENSOR_MEMORY_LEAK
//	911 CUDA_ERROR_EXTERNAL_DEVICE
//
// Older releases of that reference say of 700 and 714-719 that the context
// must be destroyed; current ones say the process is left in an
// inconsistent state and should be restarted. Destroying the context is
// the least a caller must do; whether a new context in the same process
// works is checked by this package's GPU tests on the machine they run on.
func (r Result) Sticky() bool {
	switch r {
	case ErrIllegalAddress, ErrLaunchTimeout, ErrAssert,
		ErrHardwareStackError, ErrIllegalInstruction, ErrMisalignedAddress,
		ErrInvalidAddressSpace, ErrInvalidPC, ErrLaunchFailed,
		ErrContained, ErrTensorMemoryLeak, ErrExternalDevice:
		return true
	}
	return false
}

// Error is a failed CUDA driver call.
//
// Op is the driver function that failed (such as "cuLaunchKernel"), Code
// its result. Name and Text are the driver's own name and description of
// the code (cuGetErrorName, cuGetErrorString); where the driver gives
// none, they come from this package's table, and Text is empty for a code
// the table does not know either.
type Error struct {
	Op   string
	Code Result
	Name string
	Text string
}

// Error formats the error as "Op: NAME (number): description", for
// example "cuLaunchKernel: CUDA_ERROR_ILLEGAL_ADDRESS (700): an illegal
// memory access was encountered". Empty parts are left out: no "Op: "
// without an Op, no ": description" without a Text; an empty Name is
// replaced by Code.String(). A nil *Error gives "<nil>".
func (e *Error) Error() string {
	if e == nil {
		return "<nil>"
	}
	name := e.Name
	if name == "" {
		name = e.Code.String()
	}
	s := fmt.Sprintf("%s (%d)", name, int32(e.Code))
	if e.Op != "" {
		s = e.Op + ": " + s
	}
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// Sticky reports whether the error leaves its context unusable until the
// context is destroyed; see Result.Sticky for the codes and the source.
// A nil *Error is not sticky.
func (e *Error) Sticky() bool {
	return e != nil && e.Code.Sticky()
}

// IsSticky reports whether err is, or wraps, an *Error that is Sticky.
// It is false for nil and for errors of other types.
func IsSticky(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Sticky()
}

// CodeOf returns the Code of the *Error that err is or wraps, and Success
// when err is nil or holds no *Error (for example ErrInvalidArgument or
// ErrDestroyed errors, which never reached the driver).
func CodeOf(err error) Result {
	var e *Error
	if errors.As(err, &e) && e != nil {
		return e.Code
	}
	return Success
}

// destroyed returns the error of a call made on an object that is gone.
func destroyed(op, what string) error {
	return fmt.Errorf("%s: the %s is gone: %w", op, what, ErrDestroyed)
}

// invalid returns the error of a call whose arguments were rejected
// before reaching the driver.
func invalid(op, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", op, ErrInvalidArgument, fmt.Sprintf(format, args...))
}
