package cuda

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLoadMissingLibrary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "libcuda.so.1")
	d, err := Load(path)
	if d != nil || !errors.Is(err, ErrNoDriver) {
		t.Fatalf("Load(%q) = %v, %v; want an ErrNoDriver error", path, d, err)
	}
	if errors.Is(err, ErrNoDevice) || CodeOf(err) != Success {
		t.Errorf("error also wraps a device or driver error: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"no CUDA driver", path, EnvVar} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
}

func TestLoadFromEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "libcuda-from-env.so")
	t.Setenv(EnvVar, path)
	_, err := Load("")
	if !errors.Is(err, ErrNoDriver) {
		t.Fatalf("Load(\"\") with %s=%s: %v; want an ErrNoDriver error", EnvVar, path, err)
	}
	for _, want := range []string{path, EnvVar} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// The empty path and the path it resolves to share one attempt.
	if _, err2 := Load(path); err2 != err {
		t.Errorf("Load(%q) after Load(\"\") gave another error: %v", path, err2)
	}
}

func TestLoadMemoized(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memo", "libcuda.so.1")
	var wg sync.WaitGroup
	errs := make([]error, 16)
	drvs := make([]*Driver, 16)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			drvs[i], errs[i] = Load(path)
		}()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] == nil || errs[i] != errs[0] || drvs[i] != nil {
			t.Fatalf("Load %d: %v, %v; want the same error as the first, %v", i, drvs[i], errs[i], errs[0])
		}
	}
	if _, err := Load(path); err != errs[0] {
		t.Errorf("a later Load gave another error: %v", err)
	}
	// Another path is another attempt.
	other := filepath.Join(filepath.Dir(path), "libcuda.so")
	if _, err := Load(other); err == errs[0] || !strings.Contains(err.Error(), other) {
		t.Errorf("Load(%q) = %v", other, err)
	}
}

// TestNotLoaded: values not obtained from this package's constructors
// give errors, not panics.
func TestNotLoaded(t *testing.T) {
	var d *Driver
	for _, drv := range []*Driver{d, {}} {
		if drv.Path() != "" || drv.Version() != 0 {
			t.Error("Path or Version of an unloaded Driver not zero")
		}
		if _, err := drv.DeviceCount(); !errors.Is(err, ErrNoDriver) {
			t.Errorf("DeviceCount: %v", err)
		}
		if _, err := drv.Device(0); !errors.Is(err, ErrNoDriver) {
			t.Errorf("Device: %v", err)
		}
		if _, err := drv.NewContext(&Device{}); !errors.Is(err, ErrNoDriver) {
			t.Errorf("NewContext: %v", err)
		}
	}

	isInvalid := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v; want an ErrInvalidArgument error", what, err)
		}
	}
	for _, c := range []*Context{nil, {}} {
		if c.Device() != nil {
			t.Error("Device of an unmade Context not nil")
		}
		isInvalid("Context.Destroy", c.Destroy())
		isInvalid("Context.Synchronize", c.Synchronize())
		_, _, err := c.LoadModule([]byte("x"), JITOptions{})
		isInvalid("LoadModule", err)
		_, err = c.Alloc(1)
		isInvalid("Alloc", err)
		isInvalid("Free", c.Free(1))
		_, err = c.AllocHost(1)
		isInvalid("AllocHost", err)
		isInvalid("FreeHost", c.FreeHost(make([]byte, 1)))
		isInvalid("HostRegister", c.HostRegister(make([]byte, 1)))
		isInvalid("HostUnregister", c.HostUnregister(make([]byte, 1)))
		isInvalid("CopyHtoD", c.CopyHtoD(1, nil))
		isInvalid("CopyDtoH", c.CopyDtoH(make([]byte, 1), 1))
		_, err = c.NewStream()
		isInvalid("NewStream", err)
		_, err = c.NewEvent()
		isInvalid("NewEvent", err)
	}
	for _, m := range []*Module{nil, {}} {
		_, err := m.Function("f")
		isInvalid("Function", err)
		_, _, err = m.Global("g")
		isInvalid("Global", err)
		isInvalid("Unload", m.Unload())
	}
	for _, s := range []*Stream{nil, {}} {
		isInvalid("Stream.CopyHtoD", s.CopyHtoD(1, []byte{1}))
		isInvalid("Stream.CopyDtoH", s.CopyDtoH([]byte{1}, 1))
		isInvalid("CopyDtoD", s.CopyDtoD(1, 2, 3))
		isInvalid("MemsetD8", s.MemsetD8(1, 2, 3))
		isInvalid("MemsetD32", s.MemsetD32(1, 2, 3))
		isInvalid("Launch nil", s.Launch(nil, Dim3{1, 1, 1}, Dim3{1, 1, 1}, 0))
		isInvalid("Launch", s.Launch(&Function{mod: &Module{}}, Dim3{1, 1, 1}, Dim3{1, 1, 1}, 0))
		isInvalid("Stream.Synchronize", s.Synchronize())
		_, err := s.Query()
		isInvalid("Stream.Query", err)
		isInvalid("Stream.Destroy", s.Destroy())
	}
	for _, e := range []*Event{nil, {}} {
		isInvalid("Record nil", e.Record(nil))
		isInvalid("Record", e.Record(&Stream{obj: object{ctx: &Context{}}}))
		isInvalid("Event.Synchronize", e.Synchronize())
		_, err := e.Query()
		isInvalid("Event.Query", err)
		isInvalid("Event.Destroy", e.Destroy())
	}
}

// TestArgumentChecks: arguments rejected before any driver call.
func TestArgumentChecks(t *testing.T) {
	c := &Context{}
	if _, err := c.Alloc(0); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "cuMemAlloc_v2") {
		t.Errorf("Alloc(0): %v", err)
	}
	if _, err := c.AllocHost(-1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("AllocHost(-1): %v", err)
	}
	if err := c.FreeHost(nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("FreeHost(nil): %v", err)
	}
	if _, _, err := c.LoadModule(nil, JITOptions{}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "empty image") {
		t.Errorf("LoadModule(nil): %v", err)
	}
	if _, _, err := c.LoadModule([]byte(".version 7.0"), JITOptions{LogBytes: -1}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("LoadModule(LogBytes -1): %v", err)
	}
	m := &Module{}
	if _, err := m.Function(""); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Function(\"\"): %v", err)
	}
	if _, _, err := m.Global("a\x00b"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Global with NUL: %v", err)
	}
	s := &Stream{}
	err := s.Launch(&Function{Name: "k", mod: m}, Dim3{1, 1, 1}, Dim3{1, 1, 1}, 0, make([]uint64, MaxLaunchParams+1)...)
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "17 kernel parameters") {
		t.Errorf("Launch with 17 parameters: %v", err)
	}
}

func TestDeviceArch(t *testing.T) {
	for _, c := range []struct {
		major, minor int
		arch         string
		cc           int
	}{{9, 0, "sm_90", 90}, {8, 6, "sm_86", 86}, {5, 2, "sm_52", 52}, {10, 0, "sm_100", 100}, {12, 1, "sm_121", 121}} {
		dev := &Device{Major: c.major, Minor: c.minor}
		if dev.Arch() != c.arch || dev.CC() != c.cc {
			t.Errorf("%d.%d: Arch %q CC %d, want %q %d", c.major, c.minor, dev.Arch(), dev.CC(), c.arch, c.cc)
		}
	}
}

func TestMillis(t *testing.T) {
	if got := millis(1.5); got != 1500000 {
		t.Errorf("millis(1.5) = %v", got)
	}
	if millis(-1) != 0 || millis(float32(nan())) != 0 {
		t.Error("negative or NaN wall time not 0")
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestCString(t *testing.T) {
	if got := cString([]byte("line 3: error\x00\x00junk")); got != "line 3: error" {
		t.Errorf("cString = %q", got)
	}
	if got := cString([]byte("full")); got != "full" {
		t.Errorf("cString without NUL = %q", got)
	}
	b := []byte("abc\x00")
	if goString(&b[0], 10) != "abc" || goString(&b[0], 2) != "ab" || goString(nil, 10) != "" {
		t.Error("goString")
	}
}
