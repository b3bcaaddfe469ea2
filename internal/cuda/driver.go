package cuda

import (
	"fmt"
	"os"
	"sync"
)

// DefaultLibrary is the driver library Load opens when given no path and
// EnvVar is not set. It is the name the NVIDIA driver installs on Linux;
// the dynamic loader searches its usual directories for it.
const DefaultLibrary = "libcuda.so.1"

// EnvVar is the environment variable Load reads for the driver library's
// path when it is given none.
const EnvVar = "HOTKERNEL_LIBCUDA"

// Driver is a loaded and initialised CUDA driver library. It is obtained
// from Load and is never unloaded. Its methods are safe for concurrent
// use. A Driver not obtained from Load (a zero Driver or a nil *Driver)
// answers every method with an error wrapping ErrNoDriver, and Path and
// Version with their zero values.
type Driver struct {
	path    string
	api     *api
	version int
}

type loadResult struct {
	once sync.Once
	drv  *Driver
	err  error
}

var loaded struct {
	sync.Mutex
	byPath map[string]*loadResult
}

// Load opens the CUDA driver library at path, binds the driver functions
// this package uses and initialises the driver with cuInit(0).
//
// An empty path means the value of the environment variable
// HOTKERNEL_LIBCUDA (EnvVar) when it is set and not empty, else
// DefaultLibrary. A path without a slash is searched for by the dynamic
// loader.
//
// Load is memoized per resolved path: every later call for the same path,
// concurrent ones included, returns the same *Driver or the same error
// without trying again; concurrent first calls wait for one attempt.
//
// Errors: a library that cannot be opened, one lacking a function this
// package binds, or a platform without the binding (anything but
// linux/amd64 and linux/arm64) give an error wrapping ErrNoDriver that
// names the path, and the symbol when one is missing, and says how to
// point Load at the library; cuInit reporting CUDA_ERROR_NO_DEVICE gives
// an error wrapping both ErrNoDevice and the *Error; any other cuInit or
// cuDriverGetVersion failure gives the *Error. Load does not panic.
func Load(path string) (*Driver, error) {
	fromEnv := false
	if path == "" {
		if env := os.Getenv(EnvVar); env != "" {
			path, fromEnv = env, true
		} else {
			path = DefaultLibrary
		}
	}
	loaded.Lock()
	if loaded.byPath == nil {
		loaded.byPath = make(map[string]*loadResult)
	}
	r := loaded.byPath[path]
	if r == nil {
		r = new(loadResult)
		loaded.byPath[path] = r
	}
	loaded.Unlock()
	r.once.Do(func() { r.drv, r.err = load(path, fromEnv) })
	return r.drv, r.err
}

// loadHint is the advice that ends Load's errors about the library: where
// the path came from, or how to give one.
func loadHint(fromEnv bool, what string) string {
	if fromEnv {
		return "(the path is from " + EnvVar + ")"
	}
	return "(set " + EnvVar + " to " + what + ")"
}

// load is one uncached Load of a resolved path.
func load(path string, fromEnv bool) (drv *Driver, err error) {
	defer func() {
		if p := recover(); p != nil {
			drv, err = nil, fmt.Errorf("%w: loading %s: %v", ErrNoDriver, path, p)
		}
	}()
	a, err := openLibrary(path, fromEnv)
	if err != nil {
		return nil, err
	}
	d := &Driver{path: path, api: a}
	if r := a.cuInit(0); r != Success {
		e := d.newError("cuInit", r)
		if r == ErrNoDeviceCode {
			return nil, fmt.Errorf("%w: %w", ErrNoDevice, e)
		}
		return nil, e
	}
	var v int32
	if r := a.cuDriverGetVersion(&v); r != Success {
		return nil, d.newError("cuDriverGetVersion", r)
	}
	d.version = int(v)
	return d, nil
}

// Path returns the path the library was loaded from, as resolved by Load
// (never empty for a loaded Driver, "" for a Driver not from Load).
func (d *Driver) Path() string {
	if d == nil {
		return ""
	}
	return d.path
}

// Version returns the CUDA version the driver supports, as reported by
// cuDriverGetVersion when it was loaded: 1000*major + 10*minor, for
// example 12040 for CUDA 12.4. It is 0 for a Driver not from Load.
func (d *Driver) Version() int {
	if d == nil {
		return 0
	}
	return d.version
}

// usable returns nil for a Driver from Load and an error wrapping
// ErrNoDriver naming op otherwise.
func (d *Driver) usable(op string) error {
	if d == nil || d.api == nil {
		return fmt.Errorf("%s: %w: the Driver was not obtained from Load", op, ErrNoDriver)
	}
	return nil
}

// check returns nil for Success and the *Error of op otherwise.
func (d *Driver) check(op string, r Result) error {
	if r == Success {
		return nil
	}
	return d.newError(op, r)
}

// newError builds the *Error of op failing with r, naming and describing
// r with the driver's cuGetErrorName and cuGetErrorString and falling back
// to this package's table.
func (d *Driver) newError(op string, r Result) *Error {
	e := &Error{Op: op, Code: r}
	if d != nil && d.api != nil {
		var p *byte
		if d.api.cuGetErrorName(r, &p) == Success {
			e.Name = goString(p, 256)
		}
		p = nil
		if d.api.cuGetErrorString(r, &p) == Success {
			e.Text = goString(p, 1024)
		}
	}
	if e.Name == "" {
		e.Name = r.String()
	}
	if e.Text == "" {
		e.Text = r.description()
	}
	return e
}

// DeviceCount returns the number of CUDA devices the driver reports
// (cuDeviceGetCount). It may be 0.
func (d *Driver) DeviceCount() (int, error) {
	if err := d.usable("cuDeviceGetCount"); err != nil {
		return 0, err
	}
	var n int32
	if err := d.check("cuDeviceGetCount", d.api.cuDeviceGetCount(&n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

// Device describes one CUDA device. The exported fields are filled by
// Driver.Device and are for reading; changing them does not change which
// device NewContext uses.
type Device struct {
	Ordinal         int    // the ordinal passed to Driver.Device
	Name            string // the product name, e.g. "NVIDIA H100 80GB HBM3"
	Major, Minor    int    // compute capability
	TotalMemory     uint64 // bytes of device memory
	Multiprocessors int    // streaming multiprocessors

	drv    *Driver
	handle int32 // CUdevice
}

// Arch returns the architecture name of the device's compute capability,
// "sm_" followed by Major and Minor, for example "sm_90" for 9.0.
func (dev *Device) Arch() string {
	return fmt.Sprintf("sm_%d%d", dev.Major, dev.Minor)
}

// CC returns the compute capability as one number, 10*Major+Minor, for
// example 90 for 9.0.
func (dev *Device) CC() int {
	return 10*dev.Major + dev.Minor
}

// Device returns the device with the given ordinal (0 for the first) and
// its properties. An ordinal outside [0, DeviceCount()) gives an error
// wrapping ErrNoDevice that names the ordinal and the count. Each call
// returns a new *Device.
func (d *Driver) Device(ordinal int) (*Device, error) {
	n, err := d.DeviceCount()
	if err != nil {
		return nil, err
	}
	if ordinal < 0 || ordinal >= n {
		return nil, fmt.Errorf("%w: device %d requested, the driver reports %d device(s)", ErrNoDevice, ordinal, n)
	}
	a := d.api
	dev := &Device{Ordinal: ordinal, drv: d}
	if err := d.check("cuDeviceGet", a.cuDeviceGet(&dev.handle, int32(ordinal))); err != nil {
		return nil, err
	}
	name := make([]byte, 256)
	if err := d.check("cuDeviceGetName", a.cuDeviceGetName(&name[0], int32(len(name)), dev.handle)); err != nil {
		return nil, err
	}
	dev.Name = goString(&name[0], len(name))
	attrs := []struct {
		attr int32
		dst  *int
	}{
		{attrCCMajor, &dev.Major},
		{attrCCMinor, &dev.Minor},
		{attrMultiprocessors, &dev.Multiprocessors},
	}
	for _, at := range attrs {
		var v int32
		if err := d.check("cuDeviceGetAttribute", a.cuDeviceGetAttribute(&v, at.attr, dev.handle)); err != nil {
			return nil, err
		}
		*at.dst = int(v)
	}
	if err := d.check("cuDeviceTotalMem_v2", a.cuDeviceTotalMem(&dev.TotalMemory, dev.handle)); err != nil {
		return nil, err
	}
	return dev, nil
}
