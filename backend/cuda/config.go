package cuda

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Compiler says how PTX becomes code the device runs.
type Compiler int

const (
	// CompilerDriver hands PTX to the CUDA driver's JIT compiler
	// (cuModuleLoadDataEx), which compiles it for the device; its error
	// log becomes the compile error, with PTX line numbers. The driver
	// caches what it compiled (~/.nv/ComputeCache), so loading the same
	// PTX again, in another context, is fast.
	CompilerDriver Compiler = iota
	// CompilerPTXAS assembles PTX with NVIDIA's ptxas for the device's
	// architecture and loads the CUBIN. It needs ptxas (Config.PTXAS,
	// HOTKERNEL_PTXAS or PATH); its diagnostics become the compile error.
	CompilerPTXAS
)

// String returns "driver" or "ptxas".
func (c Compiler) String() string {
	switch c {
	case CompilerDriver:
		return "driver"
	case CompilerPTXAS:
		return "ptxas"
	}
	return fmt.Sprintf("Compiler(%d)", int(c))
}

// ParseCompiler parses "driver" or "ptxas".
func ParseCompiler(s string) (Compiler, error) {
	switch s {
	case "driver", "":
		return CompilerDriver, nil
	case "ptxas":
		return CompilerPTXAS, nil
	}
	return 0, fmt.Errorf("cuda: unknown compiler %q: want driver or ptxas", s)
}

// Config tunes a Backend. Start from DefaultConfig and change fields;
// New and NewOffline reject a Config that Validate rejects.
type Config struct {
	// Library is the path of the CUDA driver library. When empty, the
	// environment variable HOTKERNEL_LIBCUDA is used, then libcuda.so.1
	// as the dynamic loader finds it.
	Library string

	// Device is the ordinal of the GPU to run on, from 0.
	Device int

	// Compiler says how PTX is compiled; default CompilerDriver. CUBIN is
	// always loaded as it is, after its SM architecture is checked
	// against the device.
	Compiler Compiler

	// PTXAS is the path of ptxas for CompilerPTXAS and for NewOffline.
	// When empty, HOTKERNEL_PTXAS is used, then ptxas on PATH.
	PTXAS string

	// Arch is the architecture NewOffline compiles and checks for
	// ("sm_80", "sm_90"): PTX is assembled for it and a CUBIN must run on
	// it. New ignores it and uses the device's. Default "sm_80".
	Arch string

	// BatchTimeout bounds each launch of hk_process, from the first copy
	// of the batch to the device to the last copy of its results back.
	// A kernel still running at the deadline cannot be stopped on its
	// own: the instance is dead, and its context is destroyed before the
	// next use. Greater than 0; default 1 s.
	BatchTimeout time.Duration

	// CallTimeout bounds every other launch (hk_init, hk_migrate) and
	// module loads. Greater than 0; default 30 s (a cold JIT of a large
	// module takes seconds).
	CallTimeout time.Duration

	// MaxBatchMessages is the most messages one launch of hk_process
	// gets; a longer batch is split into several launches. 1 to 1<<20;
	// default 4096.
	MaxBatchMessages int

	// InboxBytes is the most message bytes one launch gets. A message
	// longer than this fails with ErrMessageTooLarge. 64 to 1 GiB;
	// default 1 MiB.
	InboxBytes int

	// JITVerbose asks the driver's JIT for its verbose info log
	// (registers and memory used per function), kept in
	// Program.JITLog.
	JITVerbose bool

	// Logger receives what the backend has to say about recoveries and
	// destroyed contexts. Nil discards it.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config {
	return Config{
		Arch:             "sm_80",
		BatchTimeout:     time.Second,
		CallTimeout:      30 * time.Second,
		MaxBatchMessages: 4096,
		InboxBytes:       1 << 20,
	}
}

// Validate reports the first field out of range.
func (c Config) Validate() error {
	var errs []error
	if c.Device < 0 {
		errs = append(errs, fmt.Errorf("cuda: Config.Device %d: must be 0 or more", c.Device))
	}
	if c.Compiler != CompilerDriver && c.Compiler != CompilerPTXAS {
		errs = append(errs, fmt.Errorf("cuda: Config.Compiler %v: want CompilerDriver or CompilerPTXAS", c.Compiler))
	}
	if c.BatchTimeout <= 0 {
		errs = append(errs, fmt.Errorf("cuda: Config.BatchTimeout %v: must be greater than 0", c.BatchTimeout))
	}
	if c.CallTimeout <= 0 {
		errs = append(errs, fmt.Errorf("cuda: Config.CallTimeout %v: must be greater than 0", c.CallTimeout))
	}
	if c.MaxBatchMessages < 1 || c.MaxBatchMessages > 1<<20 {
		errs = append(errs, fmt.Errorf("cuda: Config.MaxBatchMessages %d: must be 1 to %d", c.MaxBatchMessages, 1<<20))
	}
	if c.InboxBytes < 64 || c.InboxBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("cuda: Config.InboxBytes %d: must be 64 to %d", c.InboxBytes, 1<<30))
	}
	return errors.Join(errs...)
}

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}
