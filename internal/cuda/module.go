package cuda

import (
	"bytes"
	"math"
	"runtime"
	"strings"
	"time"
	"unsafe"
)

// JITOptions configures the driver's PTX compilation in LoadModule.
type JITOptions struct {
	// Verbose asks for verbose messages in JITLog.Info
	// (CU_JIT_LOG_VERBOSE), such as register and memory use per kernel.
	Verbose bool
	// LogBytes is the size of each of the two log buffers, information
	// and errors; longer logs are cut. 0 means 64 KiB. Negative values
	// and values above 1 GiB give an error wrapping ErrInvalidArgument.
	LogBytes int
}

// defaultLogBytes is the log buffer size when JITOptions.LogBytes is 0.
const defaultLogBytes = 64 << 10

// JITLog is what the driver reported while loading a module.
type JITLog struct {
	Info     string        // CU_JIT_INFO_LOG_BUFFER, up to its first NUL
	Error    string        // CU_JIT_ERROR_LOG_BUFFER, up to its first NUL
	WallTime time.Duration // CU_JIT_WALL_TIME: time spent compiling and linking
}

// Module is code loaded into a context: its kernels (Function) and
// global variables (Global). Its methods are safe for concurrent use and
// follow the Context's threading model. It is released by Unload or with
// its context; a Module not obtained from LoadModule answers every method
// with an error wrapping ErrInvalidArgument.
type Module struct {
	obj object
}

func (m *Module) object() *object {
	if m == nil {
		return nil
	}
	return &m.obj
}

// Function is a kernel of a Module, launched with Stream.Launch. Name is
// the entry's name in the module. A Function is valid while its module
// is loaded; launching it afterwards gives an error wrapping ErrDestroyed.
type Function struct {
	Name string

	mod    *Module
	handle uintptr // CUfunction
}

// ELF (CUBIN) and fatbin images are passed to the driver unchanged.
var (
	elfMagic    = []byte("\x7fELF")
	fatbinMagic = []byte{0x50, 0xed, 0x55, 0xba} // 0xba55ed50, little-endian
)

// LoadModule loads a module into the context with cuModuleLoadDataEx.
//
// image is PTX text, a CUBIN (an ELF file, recognised by its magic
// bytes) or a fatbin (recognised by its magic number). PTX is passed
// NUL-terminated: when its last byte is not NUL, a copy with one appended
// is passed; binary images are passed as they are. image is only read
// during the call and may be reused afterwards.
//
// The driver's information and error logs and the compile time are
// returned in the JITLog, also when loading fails; on failure the error
// is an *Error with Op "cuModuleLoadDataEx" (commonly CUDA_ERROR_INVALID_PTX,
// CUDA_ERROR_NO_BINARY_FOR_GPU or CUDA_ERROR_INVALID_IMAGE) and the
// reason is in JITLog.Error. An empty image or bad opts give an error
// wrapping ErrInvalidArgument and an empty JITLog.
func (c *Context) LoadModule(image []byte, opts JITOptions) (*Module, JITLog, error) {
	const op = "cuModuleLoadDataEx"
	if len(image) == 0 {
		return nil, JITLog{}, invalid(op, "empty image")
	}
	logBytes := opts.LogBytes
	if logBytes == 0 {
		logBytes = defaultLogBytes
	}
	if logBytes < 0 || logBytes > 1<<30 {
		return nil, JITLog{}, invalid(op, "log buffer size %d outside 1 B .. 1 GiB", opts.LogBytes)
	}
	if !bytes.HasPrefix(image, elfMagic) && !bytes.HasPrefix(image, fatbinMagic) && image[len(image)-1] != 0 {
		terminated := make([]byte, len(image)+1)
		copy(terminated, image)
		image = terminated
	}
	infoLog := make([]byte, logBytes)
	errorLog := make([]byte, logBytes)
	wall := new(float32)
	verbose := uintptr(0)
	if opts.Verbose {
		verbose = 1
	}

	// The option values are an array of pointer-sized slots: pointers for
	// the buffers, the numbers themselves for sizes and flags. The
	// driver writes the used log sizes into the size slots and the wall
	// time, a float in milliseconds, into the CU_JIT_WALL_TIME slot. That
	// slot is given the address of a float as well, so that a driver
	// writing through it instead is harmless and read too.
	options := [...]int32{jitWallTime, jitInfoLogBuffer, jitInfoLogBufferSize, jitErrorLogBuffer, jitErrorLogBufferSize, jitLogVerbose}
	values := [...]uintptr{
		uintptr(unsafe.Pointer(wall)),
		uintptr(unsafe.Pointer(&infoLog[0])), uintptr(logBytes),
		uintptr(unsafe.Pointer(&errorLog[0])), uintptr(logBytes),
		verbose,
	}
	wallSlot := values[0]

	if err := c.enter(op); err != nil {
		return nil, JITLog{}, err
	}
	var h uintptr
	r := c.drv.api.cuModuleLoadDataEx(&h, unsafe.Pointer(&image[0]), uint32(len(options)), &options[0], &values[0])
	c.leave()
	// The Go memory the slots point to must outlive the call.
	runtime.KeepAlive(image)
	runtime.KeepAlive(infoLog)
	runtime.KeepAlive(errorLog)
	runtime.KeepAlive(wall)

	ms := *wall
	if values[0] != wallSlot {
		ms = math.Float32frombits(uint32(values[0]))
	}
	log := JITLog{
		Info:     cString(infoLog),
		Error:    cString(errorLog),
		WallTime: millis(ms),
	}
	if r != Success {
		return nil, log, c.drv.newError(op, r)
	}
	return &Module{obj: object{ctx: c, kind: "module", handle: h}}, log, nil
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// millis converts a time in milliseconds to a Duration; values that are
// not finite and non-negative give 0.
func millis(ms float32) time.Duration {
	f := float64(ms) * float64(time.Millisecond)
	if math.IsNaN(f) || f < 0 || f > math.MaxInt64 {
		return 0
	}
	return time.Duration(f)
}

// checkName rejects symbol names the driver cannot be asked for.
func checkName(op, name string) error {
	if name == "" {
		return invalid(op, "empty name")
	}
	if strings.IndexByte(name, 0) >= 0 {
		return invalid(op, "name %q contains NUL", name)
	}
	return nil
}

// Function returns the kernel (.entry) called name (cuModuleGetFunction).
// A name the module does not define gives an *Error with Code ErrNotFound.
func (m *Module) Function(name string) (*Function, error) {
	const op = "cuModuleGetFunction"
	if err := checkName(op, name); err != nil {
		return nil, err
	}
	o := m.object()
	if err := o.enter(op, "module"); err != nil {
		return nil, err
	}
	defer o.leave()
	var h uintptr
	if err := o.ctx.drv.check(op, o.ctx.drv.api.cuModuleGetFunction(&h, o.handle, name)); err != nil {
		return nil, err
	}
	return &Function{Name: name, mod: m, handle: h}, nil
}

// Global returns the device address and size in bytes of the module's
// global variable called name (cuModuleGetGlobal_v2). A name the module
// does not define gives an *Error with Code ErrNotFound. The address is
// valid while the module is loaded.
func (m *Module) Global(name string) (DevicePtr, uint64, error) {
	const op = "cuModuleGetGlobal_v2"
	if err := checkName(op, name); err != nil {
		return 0, 0, err
	}
	o := m.object()
	if err := o.enter(op, "module"); err != nil {
		return 0, 0, err
	}
	defer o.leave()
	var p, size uint64
	if err := o.ctx.drv.check(op, o.ctx.drv.api.cuModuleGetGlobal(&p, &size, o.handle, name)); err != nil {
		return 0, 0, err
	}
	return DevicePtr(p), size, nil
}

// Unload unloads the module (cuModuleUnload), waiting for calls in
// progress on it. Its Functions and Global addresses are invalid
// afterwards; wait for work that uses them (Stream.Synchronize, an
// Event) before unloading. Unload is idempotent and returns nil once the
// module is gone, including after its context was destroyed.
func (m *Module) Unload() error {
	o := m.object()
	return o.release("cuModuleUnload", "module", func(h uintptr) Result {
		return o.ctx.drv.api.cuModuleUnload(h)
	})
}
