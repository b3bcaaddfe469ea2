package cuda

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hotkernel/hotkernel/backend"
	"github.com/hotkernel/hotkernel/code"
	cu "github.com/hotkernel/hotkernel/internal/cuda"
	"github.com/hotkernel/hotkernel/internal/ptxas"
)

var (
	_ backend.Backend       = (*Backend)(nil)
	_ backend.Program       = (*Program)(nil)
	_ backend.Instance      = (*Instance)(nil)
	_ backend.StateAdopter  = (*Instance)(nil)
	_ backend.AdoptPreparer = (*Instance)(nil)
)

// Backend runs PTX and CUBIN kernels on one NVIDIA GPU. It is safe for
// concurrent use.
type Backend struct {
	cfg  Config
	log  *slog.Logger
	drv  *cu.Driver // nil for an offline Backend
	dev  *cu.Device
	arch string

	mu       sync.Mutex
	compile  *cu.Context // the context modules are checked in; nil until needed
	lineages map[*lineage]struct{}
	closed   bool
}

// DeviceInfo describes the GPU a Backend runs on.
type DeviceInfo struct {
	Ordinal         int
	Name            string
	Arch            string // "sm_90"
	TotalMemory     uint64 // bytes
	Multiprocessors int
	DriverVersion   int // 12040 for CUDA 12.4
	Library         string
}

// New loads the CUDA driver (Config.Library) and opens the device
// Config.Device. Without a driver the error wraps ErrNoDriver, without a
// GPU ErrNoDevice; both say what was tried.
func New(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	drv, err := cu.Load(cfg.Library)
	if err != nil {
		return nil, err
	}
	dev, err := drv.Device(cfg.Device)
	if err != nil {
		return nil, err
	}
	b := &Backend{cfg: cfg, log: cfg.logger(), drv: drv, dev: dev, arch: dev.Arch(), lineages: map[*lineage]struct{}{}}
	b.log.Info("CUDA device opened", "device", dev.Name, "arch", b.arch, "memory", dev.TotalMemory, "driver", drv.Version())
	return b, nil
}

// NewOffline returns a Backend with no device: Compile checks PTX by
// assembling it with ptxas for Config.Arch (the errors are ptxas's, with
// PTX line numbers) and reads its ABI globals from the text; a CUBIN is
// checked for structure and for running on Config.Arch. Instantiate
// fails with ErrNoDevice. It is what validation uses on machines without
// a GPU.
func NewOffline(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := ptxas.ParseArch(cfg.Arch); err != nil {
		return nil, fmt.Errorf("cuda: Config.Arch: %w", err)
	}
	return &Backend{cfg: cfg, log: cfg.logger(), arch: cfg.Arch, lineages: map[*lineage]struct{}{}}, nil
}

// Name returns "cuda".
func (b *Backend) Name() string { return "cuda" }

// Device describes the GPU; ok is false for an offline Backend.
func (b *Backend) Device() (info DeviceInfo, ok bool) {
	if b.dev == nil {
		return DeviceInfo{Arch: b.arch}, false
	}
	return DeviceInfo{
		Ordinal: b.dev.Ordinal, Name: b.dev.Name, Arch: b.arch,
		TotalMemory: b.dev.TotalMemory, Multiprocessors: b.dev.Multiprocessors,
		DriverVersion: b.drv.Version(), Library: b.drv.Path(),
	}, true
}

// Compile checks src and compiles it for the device; see Config.Compiler.
// src must be PTX or CUBIN with entry hk_process and follow the kernel
// ABI (docs/cuda.md). Errors are *code.Error or code.ErrorList
// values (with PTX line numbers for compiler errors, Kind ErrABI for ABI
// violations) or wrap a CUDA driver error. Compiling loads the module
// once, outside any pause, so a program that compiles also loads.
func (b *Backend) Compile(ctx context.Context, src *code.Source) (backend.Program, error) {
	p, err := b.CompileProgram(ctx, src)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// CompileProgram is Compile returning the *Program.
func (b *Backend) CompileProgram(ctx context.Context, src *code.Source) (*Program, error) {
	if b.isClosed() {
		return nil, fmt.Errorf("cuda: backend %w", ErrClosed)
	}
	name, _ := src.MetadataValue("name")
	f := src.Format()
	if f != code.FormatPTX && f != code.FormatCUBIN {
		return nil, &code.Error{File: name, Format: f, Kind: code.ErrMalformed,
			Reason: fmt.Sprintf("the cuda backend runs PTX and CUBIN, not %s", f)}
	}
	opts := code.Options{Name: name, PTXAS: b.cfg.PTXAS}
	if f == code.FormatCUBIN || b.dev == nil || b.cfg.Compiler == CompilerPTXAS {
		opts.Arch = b.arch
	}
	info, err := code.Validate(src, opts)
	if err != nil {
		return nil, err
	}
	p := &Program{b: b, src: src, name: name, format: f, image: src.Bytes()}
	if f == code.FormatPTX && opts.Arch != "" && info.Assembled != nil && b.dev != nil {
		p.image, p.format = info.Assembled, code.FormatCUBIN
	}
	if b.dev == nil {
		if f == code.FormatPTX {
			if p.meta, err = parsePTXMeta(src.Bytes(), info, name); err != nil {
				return nil, err
			}
		}
		return p, nil
	}
	c, err := b.compileContext()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	mod, log, err := c.LoadModule(p.image, cu.JITOptions{Verbose: b.cfg.JITVerbose})
	p.loadTime, p.jitLog = time.Since(t0), log.Info
	if err != nil {
		return nil, b.loadError(name, p.format, log, err)
	}
	defer mod.Unload()
	if p.meta, err = readMeta(c, mod, name, f); err != nil {
		return nil, err
	}
	return p, nil
}

// loadError turns a failed module load into the compiler's errors, one
// per diagnostic with its PTX line, wrapping the driver's error.
func (b *Backend) loadError(name string, f code.Format, log cu.JITLog, err error) error {
	var list code.ErrorList
	for _, d := range ptxas.ParseDiagnostics(log.Error) {
		if !d.IsError() || d.Message == ptxas.AbortedMessage {
			continue
		}
		list = append(list, &code.Error{File: name, Format: f, Line: d.Line, Reason: d.Message, Kind: code.ErrAssemble})
	}
	if len(list) == 0 {
		reason := err.Error()
		if log.Error != "" {
			reason += ": " + log.Error
		}
		if cu.CodeOf(err) == cu.ErrNoBinaryForGPU || cu.CodeOf(err) == cu.ErrInvalidImage {
			reason += fmt.Sprintf(" (the device is %s)", b.arch)
		}
		return &code.Error{File: name, Format: f, Reason: reason, Kind: code.ErrAssemble}
	}
	return fmt.Errorf("%w\n(%w)", list, err)
}

// compileContext returns the context modules are checked in, creating it
// on first use.
func (b *Backend) compileContext() (*cu.Context, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("cuda: backend %w", ErrClosed)
	}
	if b.compile == nil {
		c, err := b.drv.NewContext(b.dev)
		if err != nil {
			return nil, err
		}
		b.compile = c
	}
	return b.compile, nil
}

func (b *Backend) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close destroys every context the backend made: instances and programs
// stop working. Idempotent.
func (b *Backend) Close(context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	ls := b.lineages
	b.lineages = nil
	c := b.compile
	b.compile = nil
	b.mu.Unlock()
	var errs []error
	for l := range ls {
		errs = append(errs, l.destroy())
	}
	if c != nil {
		errs = append(errs, c.Destroy())
	}
	return errors.Join(errs...)
}

// Program is compiled kernel code for the Backend's device. It is safe
// for concurrent use.
type Program struct {
	b        *Backend
	src      *code.Source
	name     string
	format   code.Format // of image: PTX, or CUBIN when ptxas assembled it
	image    []byte
	meta     meta
	loadTime time.Duration
	jitLog   string

	mu     sync.Mutex
	closed bool
}

// Instantiate returns a new instance with no state and no context yet:
// Init or ImportState gives it a context of its own, AdoptState or
// PrepareAdopt the context of the instance whose state it takes over.
// On an offline Backend it fails with ErrNoDevice.
func (p *Program) Instantiate(context.Context) (backend.Instance, error) {
	in, err := p.NewInstance()
	if err != nil {
		return nil, err
	}
	return in, nil
}

// NewInstance is Instantiate returning the *Instance.
func (p *Program) NewInstance() (*Instance, error) {
	if p.b.dev == nil {
		return nil, fmt.Errorf("cuda: %w: this backend compiles for %s without a GPU", ErrNoDevice, p.b.arch)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("cuda: program %w", ErrClosed)
	}
	return &Instance{p: p, b: p.b, cfg: &p.b.cfg}, nil
}

// StateLayout is the module's hk_state_layout (0 for a CUBIN compiled
// offline, whose globals are not read).
func (p *Program) StateLayout() uint32 { return p.meta.layout }

// StateLen is the module's hk_state_len.
func (p *Program) StateLen() uint64 { return p.meta.stateLen }

// LoadTime is how long the driver took to load (and JIT) the module when
// it was compiled; 0 offline.
func (p *Program) LoadTime() time.Duration { return p.loadTime }

// JITLog is the driver's info log from loading the module.
func (p *Program) JITLog() string { return p.jitLog }

// Close marks the program closed; instances already made keep running.
func (p *Program) Close(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}
