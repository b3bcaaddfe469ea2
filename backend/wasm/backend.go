package wasm

import (
	"context"

	"github.com/hotkernel/hotkernel/backend"
	"github.com/hotkernel/hotkernel/code"
)

// ProcessResult tells what became of the messages given to Process; it
// is backend.Result. Processed is how many messages, from the first, the
// kernel finished with, successfully or not: msgs[:Processed] were
// handled and msgs[Processed:] never reached it (Processed is len(msgs)
// unless Process returned an error). Failures are the handled messages
// that failed, by increasing Index; the others completed. Outputs is the
// number of outputs passed to emit.
type ProcessResult = backend.Result

// Failure is one message that did not complete; it is backend.Failure.
// Index is the message's index in the slice given to Process. Err is a
// *KernelError (the kernel returned an error code), a *TrapError (it
// trapped; the instance goes on), a *DeadError (the instance died in this
// message; always the last failure), or an error wrapping
// ErrMessageTooLarge.
type Failure = backend.Failure

// The reload manager drives backends through the interfaces of package
// backend: *Instance implements backend.Instance itself, and
// Runtime.Backend adapts the Runtime and its Modules.
var (
	_ backend.Instance = (*Instance)(nil)
	_ backend.Program  = program{}
	_ backend.Backend  = wasmBackend{}
)

// Backend returns rt as a backend.Backend named "wasm". Its Compile is
// Runtime.Compile, returning a backend.Program that has every method of
// the *Module (CheckImport, CanMigrate, ...) and whose Instantiate returns
// the *Instance. Closing it closes rt.
func (rt *Runtime) Backend() backend.Backend { return wasmBackend{rt} }

type wasmBackend struct{ rt *Runtime }

func (b wasmBackend) Name() string { return "wasm" }

func (b wasmBackend) Compile(ctx context.Context, src *code.Source) (backend.Program, error) {
	m, err := b.rt.Compile(ctx, src)
	if err != nil {
		return nil, err
	}
	return program{m}, nil
}

func (b wasmBackend) Close(ctx context.Context) error { return b.rt.Close(ctx) }

// program is a *Module whose Instantiate returns a backend.Instance.
type program struct{ *Module }

func (p program) Instantiate(ctx context.Context) (backend.Instance, error) {
	in, err := p.Module.Instantiate(ctx)
	if err != nil {
		return nil, err
	}
	return in, nil
}
